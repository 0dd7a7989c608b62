/*
 * output_guard.h - may an output path be written? The checks every command
 * makes at plan time, before any work, so that -f never deletes an input
 * or a folder that is not a model output.
 */
#ifndef WELD_OUTPUT_GUARD_H
#define WELD_OUTPUT_GUARD_H

#include "base.h"

/* The files an output copies from its source model when present, besides
 * config.json (tokenizer, generation and chat-template files), NULL-ended. */
extern const char *const weld_side_files[];

/* Is name a file a model folder holds (weights, index, config, tokenizer,
 * the files weld writes beside them)? */
bool weld_is_model_folder_file(const char *name);

/*
 * Check that out may be written by a merge of the inputs (paths of every
 * model the merge reads: folders or files). out must be a non-empty path.
 * If it does not exist, that is all. If it exists, force must be set, and:
 *  - a folder output (single_file false) must be a folder holding only
 *    model folder files (weld_is_model_folder_file), no sub-folder;
 *  - a file output (single_file) must be a regular file;
 *  - either way it must not be an input, hold one, or lie inside one.
 * Returns 0, or -1 with an error that names out and says why.
 */
int weld_output_check(const char *out, bool force, bool single_file,
		      const char *const *inputs, size_t n, struct weld_error *err);

#endif
