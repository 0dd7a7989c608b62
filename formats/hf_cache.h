/*
 * hf_cache.h - models in the local Hugging Face cache, found by name
 * (DESIGN 5). weld never downloads: `org/model[@revision]` is looked up in
 * the folder the Hugging Face hub library fills, laid out as
 *
 *   <cache>/models--org--model/refs/<ref>          a commit hash
 *   <cache>/models--org--model/snapshots/<hash>/   the model's files
 *
 * where <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub. Depends only on base.h.
 */
#ifndef WELD_HF_CACHE_H
#define WELD_HF_CACHE_H

#include "base.h"

/* Is ref a name the cache is searched for: "model" or "org/model" (each
 * part letters, digits, '-', '_' and '.', neither "." nor ".."), either
 * followed by "@revision"? ref must not be NULL. */
bool weld_hf_is_name(const char *ref);

/*
 * The snapshot folder of ref, a name weld_hf_is_name() accepts. A revision
 * is a ref (refs/<revision> names the snapshot) or a snapshot hash; without
 * one, refs/main, else the newest snapshot (by modification time, then
 * name). Returns 0 and the real absolute path in *out (caller frees), or -1
 * with *out NULL and err filled:
 *   WELD_ERR_ARG    the cache does not hold it; err->msg says where weld
 *                   looked ("not in the Hugging Face cache: no folder
 *                   '<cache>/models--org--model' ($HF_HUB_CACHE)", or which
 *                   revision or snapshot is missing)
 *   WELD_ERR_IO     the snapshot's real path cannot be resolved
 *   WELD_ERR_NOMEM
 */
int weld_hf_snapshot(const char *ref, char **out, struct weld_error *err);

#endif
