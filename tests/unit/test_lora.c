/*
 * test_lora.c - a PEFT LoRA adapter applied as the model is read
 * (formats/lora.c): values worked out by hand for a plain module, a bias,
 * rank_pattern/alpha_pattern and use_rslora, reads that start and end
 * inside rows, and the pattern rule (.*\.)?(K)$ of adapter_config.json.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "weld.h"
#include "lora.h"
#include "fixtures.h"

/*
 * base: m.weight [2 × 3] = 1..6, m.bias [2] = (0.5, -0.5),
 *       n.weight [2 × 2] = all 1.
 * adapter: m: A [1 × 3] = (1, 0, 2), B [2 × 1] = (1, -1), bias (1, 1);
 *          n: A [2 × 2] = identity, B [2 × 2] = (1, 2, 3, 4).
 */
static const float BASE[] = { 1, 2, 3, 4, 5, 6, 0.5f, -0.5f, 1, 1, 1, 1 };
static const char BASE_HDR[] =
	"{\"m.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
	"\"m.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
	"\"n.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[32,48]}}";
static const float ADAPTER[] = { 1, 0, 2, 1, -1, 1, 1, 1, 0, 0, 1, 1, 2, 3, 4 };
static const char ADAPTER_HDR[] =
	"{\"base_model.model.m.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[0,12]},"
	"\"base_model.model.m.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[12,20]},"
	"\"base_model.model.m.lora_B.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[20,28]},"
	"\"base_model.model.n.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[28,44]},"
	"\"base_model.model.n.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[44,60]}}";

static weld_model *open_adapted(const char *dir, const char *config)
{
	char *b = fixture_path(dir, "base"), *a = fixture_path(dir, "ad"), *spec, *p;
	struct weld_error err = { 0 };
	weld_model *m = NULL;

	mkdir(b, 0755);
	mkdir(a, 0755);
	free(fixture_safetensors(b, "model.safetensors", BASE_HDR, BASE, sizeof(BASE)));
	free(fixture_safetensors(a, "adapter_model.safetensors", ADAPTER_HDR, ADAPTER,
				 sizeof(ADAPTER)));
	p = fixture_write(a, "adapter_config.json", config, strlen(config));
	free(p);
	spec = malloc(strlen(b) + strlen(a) + 2);
	sprintf(spec, "%s+%s", b, a);
	if (weld_model_open(&m, spec, &err) != 0)
		print_error("open: %s\n", err.msg);
	free(spec);
	free(a);
	free(b);
	return m;
}

static void read_tensor(weld_model *m, const char *name, uint64_t first, size_t n, float *out)
{
	struct weld_error err = { 0 };
	int64_t i = weld_model_find(m, name);

	assert_true(i >= 0);
	if (weld_model_read_f32(m, (size_t)i, first, n, out, NULL, &err) != 0)
		print_error("read: %s\n", err.msg);
	assert_int_equal(err.status, WELD_OK);
}

static void test_plain_module_and_bias(void **state)
{
	weld_model *m = open_adapted(*state,
		"{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2, \"lora_bias\": true,"
		" \"rank_pattern\": {\"n\": 2}, \"alpha_pattern\": {\"n\": 1}}");
	float w[6], b[2], n[4];
	/* scale 2: W + 2·(1, -1)ᵀ(1, 0, 2) */
	const float want_w[] = { 3, 2, 7, 2, 5, 2 }, want_b[] = { 2.5f, 1.5f };
	/* n: r 2, alpha 1, scale 1/2: W + B/2 */
	const float want_n[] = { 1.5f, 2, 2.5f, 3 };

	assert_non_null(m);
	read_tensor(m, "m.weight", 0, 6, w);
	read_tensor(m, "m.bias", 0, 2, b);
	read_tensor(m, "n.weight", 0, 4, n);
	assert_memory_equal(w, want_w, sizeof(w));
	assert_memory_equal(b, want_b, sizeof(b));
	assert_memory_equal(n, want_n, sizeof(n));
	/* a read that starts and ends inside rows */
	read_tensor(m, "m.weight", 2, 3, w);
	assert_memory_equal(w, want_w + 2, 3 * sizeof(float));
	weld_model_close(m);
}

static void test_rslora_and_no_bias(void **state)
{
	/* rsLoRA: scale alpha/sqrt(r), 2/1 for m */
	weld_model *m = open_adapted(*state,
		"{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2, \"use_rslora\": true,"
		" \"rank_pattern\": {\"n\": 2}, \"alpha_pattern\": {\"n\": 8}}");
	float w[6], b[2], n[4];
	const float want_w[] = { 3, 2, 7, 2, 5, 2 }, want_b[] = { 0.5f, -0.5f };
	/* n: r 2, alpha 8, scale 8/sqrt(2) */
	const double s = 8 / sqrt(2.0);
	const float want_n[] = { (float)(1 + s), (float)(1 + 2 * s), (float)(1 + 3 * s),
				 (float)(1 + 4 * s) };

	assert_non_null(m);
	read_tensor(m, "m.weight", 0, 6, w);
	read_tensor(m, "m.bias", 0, 2, b);     /* lora_bias unset: ignored */
	read_tensor(m, "n.weight", 0, 4, n);
	assert_memory_equal(w, want_w, sizeof(w));
	assert_memory_equal(b, want_b, sizeof(b));
	assert_memory_equal(n, want_n, sizeof(n));
	assert_non_null(weld_model_warning(m));
	weld_model_close(m);
}

static void test_pattern_rule(void **state)
{
	const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16,"
			  " \"rank_pattern\": {\"q_proj\": 4, \"layers.1.v\": 2},"
			  " \"alpha_pattern\": {\"v\": 3}}";
	struct weld_lora_config c;
	struct weld_error err = { 0 };
	char *p = fixture_write(*state, "adapter_config.json", cfg, strlen(cfg));
	double alpha;
	long r;

	free(p);
	assert_int_equal(weld_lora_config_read(&c, *state, &err), 0);
	weld_lora_config_module(&c, "model.layers.0.self_attn.q_proj", &r, &alpha);
	assert_int_equal(r, 4);
	assert_true(alpha == 16);
	weld_lora_config_module(&c, "model.layers.0.self_attn.xq_proj", &r, &alpha);
	assert_int_equal(r, 8);         /* a match must start after a '.' */
	weld_lora_config_module(&c, "model.layers.1.v", &r, &alpha);
	assert_int_equal(r, 2);
	assert_true(alpha == 3);
	weld_lora_config_module(&c, "model.layers.1.vv", &r, &alpha);
	assert_int_equal(r, 8);         /* ... and run to the end */
	assert_true(alpha == 16);
	weld_lora_config_free(&c);
}

static void test_config_refusals(void **state)
{
	static const struct { const char *json, *msg; } bad[] = {
		{ "{\"peft_type\": \"LOHA\"}", "peft_type: 'LOHA' adapters are not supported" },
		{ "{\"peft_type\": \"LORA\", \"use_dora\": true}", "use_dora: DoRA" },
		{ "{\"peft_type\": \"LORA\", \"r\": 0}", "r: expected an integer" },
		{ "{\"peft_type\": \"LORA\", \"r\": 2.5}", "r: expected an integer" },
		{ "{\"peft_type\": \"LORA\", \"lora_alpha\": \"x\"}", "lora_alpha: expected a number" },
		{ "{\"peft_type\": \"LORA\", \"rank_pattern\": {\"a\": -1}}", "rank_pattern.a: expected an integer" },
		{ "{\"peft_type\": \"LORA\", \"modules_to_save\": [1]}", "modules_to_save: expected a list" },
		{ "{\"r\": 4}", "peft_type: missing" },
		{ "[1]", "not a JSON object" },
	};

	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct weld_lora_config c;
		struct weld_error err = { 0 };
		char *p = fixture_write(*state, "adapter_config.json", bad[k].json,
					strlen(bad[k].json));

		free(p);
		assert_int_equal(weld_lora_config_read(&c, *state, &err), -1);
		if (!strstr(err.msg, bad[k].msg) || !strstr(err.msg, "adapter_config.json"))
			fail_msg("case %zu: '%s' lacks '%s'", k, err.msg, bad[k].msg);
	}
}

int main(void)
{
#define D(f) cmocka_unit_test_setup_teardown(f, fixture_setup_dir, fixture_teardown_dir)
	const struct CMUnitTest tests[] = {
		D(test_plain_module_and_bias),
		D(test_rslora_and_no_bias),
		D(test_pattern_rule),
		D(test_config_refusals),
	};
#undef D
	return cmocka_run_group_tests_name("lora", tests, NULL, NULL);
}
