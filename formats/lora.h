/*
 * lora.h - a PEFT LoRA adapter applied to a model while it is read
 * (DESIGN 6.3, METHODS 16). The model layer (model.c) opens `BASE+ADAPTER`
 * as the base model with an adapter attached; reads of the tensors the
 * adapter touches come here and return W + s·B·A (or its transpose, for
 * fan_in_fan_out and embeddings), the bias plus s·lora_B.bias when
 * lora_bias is set, or the adapter's modules_to_save tensor. Nothing is
 * merged ahead of time: a read computes, for the rows it covers, the rows
 * of B·A it needs, reading the rows of B (or the columns of A) of that
 * range and the other factor of that one module.
 */
#ifndef WELD_LORA_H
#define WELD_LORA_H

#include "model.h"

struct weld_lora;

/* ---------------------------------------------------------------- adapter_config.json */

struct weld_lora_pattern;

struct weld_lora_config {
	char *path;             /* of adapter_config.json, for messages */
	long r;
	double alpha;
	bool rslora, fan_in_fan_out, lora_bias;
	struct weld_lora_pattern *rank, *alpha_p;
	size_t nrank, nalpha;
	char **save;            /* modules_to_save */
	size_t nsave;
};

/* Read and check dir/adapter_config.json. Refuses, by name, what weld
 * does not apply: another peft_type, DoRA (use_dora). */
int weld_lora_config_read(struct weld_lora_config *c, const char *dir, struct weld_error *err);
void weld_lora_config_free(struct weld_lora_config *c);
/* The rank and alpha of a module: the value of the first rank_pattern /
 * alpha_pattern key K (file order) that matches the module name as the
 * regex (.*\.)?(K)$, else r / lora_alpha. */
void weld_lora_config_module(const struct weld_lora_config *c, const char *module, long *r,
			     double *alpha);

/* ---------------------------------------------------------------- the adapter on a model */

/* Open the adapter folder dir (adapter_config.json and
 * adapter_model.safetensors or adapter_model.bin) against the base model,
 * checking every module, name and shape before any data is read. */
int weld_lora_open(struct weld_lora **out, const weld_model *base, const char *dir,
		   struct weld_error *err);
void weld_lora_close(struct weld_lora *l);

/* Does the adapter change tensor i of the base? */
bool weld_lora_touches(const struct weld_lora *l, size_t i);
/* For a tensor the adapter replaces (modules_to_save): the adapter's file
 * path and tensor info, else NULL. */
const struct weld_tensor_info *weld_lora_replacement(const struct weld_lora *l, size_t i,
						     const char **file);
/* Elements [first, first + n) of tensor i as the adapter makes them, in
 * the tensor's dtype (the base's, or the replacement's). */
int weld_lora_read(const struct weld_lora *l, const weld_model *base, size_t i,
		   uint64_t first, size_t n, void *dst, struct weld_error *err);
/* Something the caller should tell the user (a lora_B.bias ignored), or NULL. */
const char *weld_lora_warning(const struct weld_lora *l);
/* Memory a read may allocate beyond its destination: *per_elem bytes per
 * element read plus *fixed bytes (the largest module's whole factor and
 * the partial rows at the ends of a range). */
void weld_lora_read_cost(const struct weld_lora *l, const weld_model *base, uint64_t *per_elem,
			 uint64_t *fixed);
/* How many base tensors the adapter changes. */
size_t weld_lora_count(const struct weld_lora *l);

/* Tensor i of a model as its files hold it, any adapter aside (model.c). */
int weld_model_read_plain(const weld_model *m, size_t i, uint64_t first, size_t n, void *dst,
			  struct weld_error *err);

#endif
