/*
 * torch_zip.h - the probes of weld's PyTorch reader (torch_zip.c). The
 * model layer sees the reader only through its rows of the format table
 * (weld_torch_zip_format, weld_torch_legacy_format in format.h); the probes
 * are exposed for the tests.
 */
#ifndef WELD_TORCH_ZIP_H
#define WELD_TORCH_ZIP_H

#include <stdbool.h>
#include <stddef.h>

/* True if head starts like a zip archive (a local header signature). */
bool weld_torch_probe(const unsigned char *head, size_t n);

/*
 * True if head starts like a legacy (pre-1.6, non-zip) torch.save() file: a
 * pickle whose first object is the long integer 0x1950a86a20f9469cfc6c.
 */
bool weld_torch_legacy_probe(const unsigned char *head, size_t n);

#endif
