/*
 * mkmodel.c - write a small llama-shaped model with weld's own writer, for
 * the demo and the command-line tests.
 *
 *   mkmodel OUT [--layers L] [--hidden H] [--inter I] [--vocab V]
 *               [--dtype bf16|f16|f32] [--seed N] [--noise SIGMA]
 *               [--shard-size SIZE] [--int] [--experts E]
 *
 * Values are drawn from a seeded counter-based generator, so the same
 * arguments give the same bytes on every machine. With --noise the model
 * is the seed-0 "base" plus noise drawn from --seed: a fine-tune of it.
 * --int adds an I64 tensor (like position ids) that merges must copy.
 * --experts E makes it a Mixtral-style MoE: each layer's MLP becomes a
 * router and E experts (block_sparse_moe.experts.N.w1/w2/w3).
 */
#include "weld.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ULL;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* A standard normal from (stream, index), by Box-Muller. */
static float normal(uint64_t stream, uint64_t i)
{
	double u1 = ((double)(mix(stream ^ (2 * i)) >> 11) + 1) * 0x1.0p-53;
	double u2 = (double)(mix(stream ^ (2 * i + 1)) >> 11) * 0x1.0p-53;

	return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

struct spec {
	char name[128];
	int ndim;
	int64_t shape[2];
	float scale;
};

int main(int argc, char **argv)
{
	long layers = 2, hidden = 64, inter = 128, vocab = 256, seed = 0, experts = 0;
	double noise = 0;
	uint64_t shard = 0;
	bool with_int = false;
	enum weld_dtype dt = WELD_BF16;
	struct spec sp[2048];
	struct weld_out_tensor ot[2048];
	struct weld_writer_opts wo = { 0 };
	struct weld_error err = { 0 };
	weld_writer *w;
	char config[512];
	size_t n = 0;
	const char *out;

	static const char usage[] =
		"usage: mkmodel OUT [--layers L] [--hidden H] [--inter I] [--vocab V] [--experts E] "
		"[--dtype bf16|f16|f32] [--seed N] [--noise SIGMA] [--shard-size SIZE] [--int]\n";

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc < 2 || argv[1][0] == '-') {
		fputs(usage, stderr);
		return 2;
	}
	out = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";

		if (!strcmp(a, "--int")) {
			with_int = true;
			continue;
		}
		i++;
		if (!strcmp(a, "--layers")) layers = atol(v);
		else if (!strcmp(a, "--hidden")) hidden = atol(v);
		else if (!strcmp(a, "--inter")) inter = atol(v);
		else if (!strcmp(a, "--vocab")) vocab = atol(v);
		else if (!strcmp(a, "--seed")) seed = atol(v);
		else if (!strcmp(a, "--experts")) experts = atol(v);
		else if (!strcmp(a, "--noise")) noise = atof(v);
		else if (!strcmp(a, "--shard-size")) weld_parse_size(v, &shard);
		else if (!strcmp(a, "--dtype")) {
			dt = !strcmp(v, "f32") ? WELD_F32 : !strcmp(v, "f16") ? WELD_F16 : WELD_BF16;
		} else {
			fprintf(stderr, "mkmodel: unknown option '%s'\n", a);
			return 2;
		}
	}
	if (layers < 1 || layers > 30 || hidden < 1 || inter < 1 || vocab < 1 ||
	    experts < 0 || experts > 64) {
		fprintf(stderr, "mkmodel: bad sizes\n");
		return 2;
	}
#define ADD(nm, d0, d1, nd) do { \
		snprintf(sp[n].name, sizeof(sp[n].name), "%s", nm); \
		sp[n].ndim = nd; sp[n].shape[0] = d0; sp[n].shape[1] = d1; \
		sp[n].scale = nd == 1 ? 1.0f : 0.02f; n++; } while (0)
	ADD("model.embed_tokens.weight", vocab, hidden, 2);
	ADD("lm_head.weight", vocab, hidden, 2);
	ADD("model.norm.weight", hidden, 0, 1);
	for (long l = 0; l < layers; l++) {
		static const char *const proj[] = { "q_proj", "k_proj", "v_proj", "o_proj" };
		char nm[128];

		for (int k = 0; k < 4; k++) {
			snprintf(nm, sizeof(nm), "model.layers.%ld.self_attn.%s.weight", l, proj[k]);
			ADD(nm, hidden, hidden, 2);
		}
		if (experts) {
			snprintf(nm, sizeof(nm), "model.layers.%ld.block_sparse_moe.gate.weight", l);
			ADD(nm, experts, hidden, 2);
			for (long x = 0; x < experts; x++) {
				snprintf(nm, sizeof(nm), "model.layers.%ld.block_sparse_moe.experts.%ld.w1.weight", l, x);
				ADD(nm, inter, hidden, 2);
				snprintf(nm, sizeof(nm), "model.layers.%ld.block_sparse_moe.experts.%ld.w2.weight", l, x);
				ADD(nm, hidden, inter, 2);
				snprintf(nm, sizeof(nm), "model.layers.%ld.block_sparse_moe.experts.%ld.w3.weight", l, x);
				ADD(nm, inter, hidden, 2);
			}
		} else {
			snprintf(nm, sizeof(nm), "model.layers.%ld.mlp.gate_proj.weight", l);
			ADD(nm, inter, hidden, 2);
			snprintf(nm, sizeof(nm), "model.layers.%ld.mlp.up_proj.weight", l);
			ADD(nm, inter, hidden, 2);
			snprintf(nm, sizeof(nm), "model.layers.%ld.mlp.down_proj.weight", l);
			ADD(nm, hidden, inter, 2);
		}
		snprintf(nm, sizeof(nm), "model.layers.%ld.input_layernorm.weight", l);
		ADD(nm, hidden, 0, 1);
		snprintf(nm, sizeof(nm), "model.layers.%ld.post_attention_layernorm.weight", l);
		ADD(nm, hidden, 0, 1);
	}
	for (size_t i = 0; i < n; i++) {
		ot[i].name = sp[i].name;
		ot[i].dtype = dt;
		ot[i].ndim = sp[i].ndim;
		ot[i].shape[0] = sp[i].shape[0];
		ot[i].shape[1] = sp[i].shape[1];
	}
	if (with_int) {
		ot[n].name = "model.position_ids";
		ot[n].dtype = WELD_I64;
		ot[n].ndim = 1;
		ot[n].shape[0] = 16;
	}
	if (experts)
		snprintf(config, sizeof(config),
			 "{\n  \"architectures\": [\"MixtralForCausalLM\"],\n  \"model_type\": \"mixtral\",\n"
			 "  \"hidden_size\": %ld,\n  \"intermediate_size\": %ld,\n  \"num_hidden_layers\": %ld,\n"
			 "  \"num_local_experts\": %ld,\n  \"num_experts_per_tok\": 2,\n"
			 "  \"vocab_size\": %ld,\n  \"torch_dtype\": \"%s\"\n}\n", hidden, inter, layers,
			 experts, vocab,
			 weld_dtype_torch_name(dt));
	else
		snprintf(config, sizeof(config),
			 "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
			 "  \"hidden_size\": %ld,\n  \"intermediate_size\": %ld,\n  \"num_hidden_layers\": %ld,\n"
			 "  \"vocab_size\": %ld,\n  \"torch_dtype\": \"%s\"\n}\n", hidden, inter, layers, vocab,
			 weld_dtype_torch_name(dt));
	wo.shard_size = shard;
	wo.force = true;
	wo.extra_name = "config.json";
	wo.extra_data = config;
	if (weld_writer_open(&w, out, ot, n + with_int, &wo, &err) < 0)
		goto fail;
	for (size_t i = 0; i < n + with_int; i++) {
		int64_t wi = weld_writer_find(w, ot[i].name);
		uint64_t ne = (uint64_t)ot[i].shape[0] * (ot[i].ndim == 2 ? (uint64_t)ot[i].shape[1] : 1);
		size_t es = weld_dtype_size(ot[i].dtype);
		unsigned char *buf = malloc(ne * es + 8);
		float *f = malloc(ne * sizeof(float));
		uint64_t stream = 0x5EEDull * (i + 1);

		if (!buf || !f) {
			free(buf);
			free(f);
			weld_fail(&err, WELD_ERR_NOMEM, "out of memory");
			goto fail;
		}
		if (i == n) {
			for (uint64_t k = 0; k < ne; k++) {
				int64_t v = (int64_t)k;

				memcpy(buf + k * 8, &v, 8);
			}
		} else {
			for (uint64_t k = 0; k < ne; k++) {
				float base = (ot[i].ndim == 1 ? 1.0f : 0.0f) + sp[i].scale * normal(stream, k);

				f[k] = noise ? base + (float)noise * sp[i].scale *
					normal(stream ^ mix((uint64_t)seed + 1), k) : base;
			}
			weld_encode_f32(dt, f, buf, ne);
		}
		if (weld_writer_write(w, (size_t)wi, buf, ne * es, &err) < 0) {
			free(buf);
			free(f);
			goto fail;
		}
		free(buf);
		free(f);
	}
	if (weld_writer_commit(w, &err) < 0)
		goto fail;
	weld_writer_close(w);
	return 0;
fail:
	fprintf(stderr, "mkmodel: %s\n", err.msg);
	return 1;
}
