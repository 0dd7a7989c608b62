#!/usr/bin/python3
"""A checkpoint shaped as DeepSeek-V3 / R1, written as sparse files.

    deepseek_sparse.py OUT [--seed-byte B] [--bf16]

writes OUT/model-00001-of-000163.safetensors ... with the real tensor names,
shapes and dtypes (FP8 F8_E4M3 weights with their F32 weight_scale_inv,
BF16 embeddings, norms and routers, the multi-token-prediction layer 61;
see DeepSeek-V3's config.json), OUT/model.safetensors.index.json and
OUT/config.json. The tensor data are holes: the files take no disk, and
every element reads as zero. With --seed-byte B, the first byte of each
tensor is B instead, so that three such models differ a little. With
--bf16, the FP8 weights are BF16 without scales instead (the checkpoint
DeepSeek's fp8_cast_bf16.py makes) and config.json has no
quantization_config.
About 685 billion parameters, 690 GB of apparent size per model.
"""
import json
import os
import struct
import sys

H, INTER, MOE_INTER, VOCAB = 7168, 18432, 2048, 129280
LAYERS, MTP, EXPERTS, SHARDS = 61, 1, 256, 163
DENSE = 3
SIZE = {"F8_E4M3": 1, "BF16": 2, "F32": 4}
BF16 = "--bf16" in sys.argv


def fp8(name, r, c):
    if BF16:
        yield name, "BF16", [r, c]
        return
    yield name, "F8_E4M3", [r, c]
    yield name + "_scale_inv", "F32", [-(-r // 128), -(-c // 128)]


def layer(L):
    p = f"model.layers.{L}."
    yield from fp8(p + "self_attn.q_a_proj.weight", 1536, H)
    yield p + "self_attn.q_a_layernorm.weight", "BF16", [1536]
    yield from fp8(p + "self_attn.q_b_proj.weight", 24576, 1536)
    yield from fp8(p + "self_attn.kv_a_proj_with_mqa.weight", 576, H)
    yield p + "self_attn.kv_a_layernorm.weight", "BF16", [512]
    yield from fp8(p + "self_attn.kv_b_proj.weight", 32768, 512)
    yield from fp8(p + "self_attn.o_proj.weight", H, 16384)
    yield p + "input_layernorm.weight", "BF16", [H]
    yield p + "post_attention_layernorm.weight", "BF16", [H]
    if L < DENSE:
        yield from fp8(p + "mlp.gate_proj.weight", INTER, H)
        yield from fp8(p + "mlp.up_proj.weight", INTER, H)
        yield from fp8(p + "mlp.down_proj.weight", H, INTER)
        return
    for e in [f"experts.{i}" for i in range(EXPERTS)] + ["shared_experts"]:
        yield from fp8(p + f"mlp.{e}.gate_proj.weight", MOE_INTER, H)
        yield from fp8(p + f"mlp.{e}.up_proj.weight", MOE_INTER, H)
        yield from fp8(p + f"mlp.{e}.down_proj.weight", H, MOE_INTER)
    yield p + "mlp.gate.weight", "BF16", [EXPERTS, H]
    yield p + "mlp.gate.e_score_correction_bias", "F32", [EXPERTS]
    if L >= LAYERS:
        yield p + "enorm.weight", "BF16", [H]
        yield p + "hnorm.weight", "BF16", [H]
        yield p + "eh_proj.weight", "BF16", [H, 2 * H]
        yield p + "shared_head.norm.weight", "BF16", [H]
        yield p + "shared_head.head.weight", "BF16", [VOCAB, H]


def tensors():
    yield "model.embed_tokens.weight", "BF16", [VOCAB, H]
    for L in range(LAYERS + MTP):
        yield from layer(L)
    yield "model.norm.weight", "BF16", [H]
    yield "lm_head.weight", "BF16", [VOCAB, H]


def nbytes(dtype, shape):
    n = SIZE[dtype]
    for d in shape:
        n *= d
    return n


def shards(specs):
    """Cut the tensors, in order, into SHARDS runs of about equal bytes."""
    total = sum(nbytes(d, s) for _, d, s in specs)
    out, cur, acc = [[]], 0, 0
    for t in specs:
        b = nbytes(t[1], t[2])
        if out[-1] and acc + b / 2 > total * len(out) / SHARDS and len(out) < SHARDS:
            out.append([])
        out[-1].append(t)
        acc += b
    return out, total


def write_shard(path, specs, seed):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dtype, shape in specs:
        b = nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + b]}
        off += b
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + off)
        if seed is not None:
            for name, _, _ in specs:
                f.seek(8 + len(text) + header[name]["data_offsets"][0])
                f.write(bytes([seed]))


def main(argv):
    out = argv[1]
    seed = int(argv[argv.index("--seed-byte") + 1]) if "--seed-byte" in argv else None
    os.makedirs(out, exist_ok=True)
    runs, total = shards(list(tensors()))
    names = [f"model-{k + 1:05d}-of-{len(runs):06d}.safetensors" for k in range(len(runs))]
    wmap = {}
    for run, name in zip(runs, names):
        write_shard(os.path.join(out, name), run, seed)
        wmap.update({t[0]: name for t in run})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2)
    config = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
              "hidden_size": H, "intermediate_size": INTER, "moe_intermediate_size": MOE_INTER,
              "vocab_size": VOCAB, "num_hidden_layers": LAYERS, "num_nextn_predict_layers": MTP,
              "num_attention_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
              "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
              "n_routed_experts": EXPERTS, "n_shared_experts": 1, "num_experts_per_tok": 8,
              "n_group": 8, "topk_group": 4, "first_k_dense_replace": DENSE,
              "torch_dtype": "bfloat16",
              "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                      "quant_method": "fp8", "weight_block_size": [128, 128]}}
    if BF16:
        del config["quantization_config"]
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    params = sum(n for _, d, s in tensors() for n in [nbytes(d, s) // SIZE[d]])
    print(f"{out}: {len(wmap)} tensors, {params} parameters, {total} bytes in {len(runs)} shards")


if __name__ == "__main__":
    main(sys.argv)
