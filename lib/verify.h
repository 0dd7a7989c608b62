/*
 * verify.h - check a weld output against the checksums weld recorded in it
 * (weld verify).
 */
#ifndef WELD_VERIFY_H
#define WELD_VERIFY_H

#include "model.h"

/*
 * Re-hash every tensor of m and compare it with the XXH3-64 that weld
 * recorded in its file's __metadata__.weld_xxh3 (a JSON object tensor ->
 * 16 hex digits). Each problem (a file without records, a tensor without
 * one, a read error, a mismatch) is passed as one message, naming the file
 * and the tensor, to problem(ctx, msg) (problem may be NULL); a file
 * without records stops the check before any tensor is read. Returns the
 * number of problems; *ok (may be NULL) gets the number of tensors that
 * matched.
 */
size_t weld_verify(const weld_model *m, void (*problem)(void *ctx, const char *msg), void *ctx,
		   size_t *ok);

#endif
