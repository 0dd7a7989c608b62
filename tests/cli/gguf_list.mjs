// gguf_list.mjs - list a GGUF file with the npm package @huggingface/gguf
// (an independent reader): every key with its type, and every tensor's
// name, shape (PyTorch order), ggml type and absolute data offset, as one
// JSON object on stdout.
//
//   node gguf_list.mjs MODULE_DIR FILE.gguf
import { createRequire } from "node:module";
import path from "node:path";

const [moduleDir, file] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(moduleDir), "package.json"));
const { gguf } = require("@huggingface/gguf");

const { metadata, typedMetadata, tensorInfos, tensorDataOffset } =
	await gguf(path.resolve(file), { allowLocalFile: true, typedMetadata: true });
const keys = {};
for (const [k, v] of Object.entries(typedMetadata)) {
	if (k === "version" || k === "tensor_count" || k === "kv_count")
		continue;       // the header's fields, not keys
	keys[k] = { type: v.type, subType: v.subType ?? null };
}
const tensors = tensorInfos.map((t) => ({
	name: t.name,
	shape: t.shape.map(Number).reverse(),
	dtype: t.dtype,
	offset: Number(tensorDataOffset + t.offset),
}));
process.stdout.write(JSON.stringify({ version: Number(metadata.version), keys, tensors }) + "\n");
