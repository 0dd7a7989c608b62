/*
 * output_parts.h - an output written in parts (--part I/N) and joined
 * again (weld join).
 *
 * The shards of an output are cut from its plan alone (safetensors_writer.c),
 * whatever the number of parts N. Part I of N holds the shards
 * [floor((I-1)·S/N), floor(I·S/N)) of the S shards, byte for byte as the
 * whole output would hold them; so a part may hold none when N > S. A part
 * is a folder OUT.part-I-of-N holding those shards, the copied config and
 * tokenizer files, and WELD_PART_FILE, a JSON object:
 *
 *   {"format": "weld-part", "weld_version": V, "part": I, "parts": N,
 *    "plan": "<16 hex digits>", "recipe": <the normalised recipe> | null,
 *    "index": <the text of model.safetensors.index.json> | null,
 *    "shards": [{"name": "model-00001-of-00005.safetensors",
 *                "bytes": <file size>}, ...every shard of the output]}
 *
 * "plan" is the XXH3-64 of the fields that describe the whole output
 * (weld_version, recipe, index, shards: not part nor parts), so that
 * parts of one merge agree on it whatever N, and a join recomputes it.
 */
#ifndef WELD_OUTPUT_PARTS_H
#define WELD_OUTPUT_PARTS_H

#include "base.h"

#define WELD_PART_FILE "weld-part.json"
/* The most parts an output may be split into. */
#define WELD_MAX_PARTS 100000u

/* The shards of part `part` (1-based) of `parts` among nshards: their
 * count, the first in *first. */
size_t weld_part_shards(size_t nshards, unsigned part, unsigned parts, size_t *first);

/* One shard of an output: its file name and size. */
struct weld_part_shard {
	const char *name;
	uint64_t bytes;
};

/* The text of WELD_PART_FILE for part `part` of `parts` of an output of
 * the shards s[0..ns) (recipe and index may be NULL). Caller frees; NULL
 * when out of memory. */
char *weld_part_describe(unsigned part, unsigned parts, const char *recipe, const char *index,
			 const struct weld_part_shard *s, size_t ns);

/* What weld_part_check() finds in a part folder. */
struct weld_part_info {
	unsigned part, parts;
	size_t shards;          /* shards of the whole output */
	size_t held;            /* shards this part holds (0 when N > shards) */
};

/*
 * Check the part folder dir as weld join would, alone: its description is
 * valid and it holds exactly its shards at their recorded sizes, plus
 * copied files. Fills *info. Returns 0, or -1 with err naming the part and
 * the field.
 */
int weld_part_check(const char *dir, struct weld_part_info *info, struct weld_error *err);

struct weld_join_opts {
	bool force;             /* replace an existing output (as -f) */
	bool keep_parts;        /* leave the part folders as they are */
};

struct weld_join_result {
	unsigned parts;         /* parts joined */
	size_t shards;          /* shards of the output */
	uint64_t bytes;         /* their bytes */
	size_t copied;          /* files copied because a hard link was refused */
	/* after publication: a part folder that could not be removed (its
	 * path, borrowed from the caller's list), NULL if none */
	const char *left;
};

/*
 * Join the n part folders dirs[] into the output out: check that they are
 * the parts 1..N of one merge (same plan, none missing, none twice, each
 * holding exactly its shards at their recorded sizes and the same copied
 * files), then build out as weld_outdir does (temporary folder, published
 * atomically): each shard hard-linked (copied if the file system refuses),
 * the index written, the copied files taken from part 1. Then, unless
 * keep_parts, the part folders are removed. Returns 0 or -1 with err
 * naming the part and the field; nothing is changed on failure.
 */
int weld_parts_join(const char *const *dirs, size_t n, const char *out,
		    const struct weld_join_opts *o, struct weld_join_result *res,
		    struct weld_error *err);

#endif
