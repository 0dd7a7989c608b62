/*
 * registry.c - the formats weld reads, in the order their probes are tried.
 *
 * Each format's file defines its row (name, probe, parse; see format.h).
 * Adding a format is writing that file and listing its row here, before
 * safetensors: safetensors also takes every file of 8 bytes or more that no
 * probe claims, so that a damaged safetensors header is reported by the
 * safetensors parser.
 */
#include "format.h"

static const struct weld_format *const formats[] = {
	&weld_torch_zip_format,
	&weld_torch_legacy_format,
	&weld_safetensors_format,
};

#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

const struct weld_format *weld_format_detect(const unsigned char *head, size_t n,
					     const char *path, struct weld_error *err)
{
	for (size_t i = 0; i < NFORMATS; i++)
		if (formats[i]->probe(head, n))
			return formats[i];
	for (size_t i = 0; i < NFORMATS; i++)
		if (formats[i]->claims_rest && n >= formats[i]->claims_rest)
			return formats[i];
	weld_fail(err, WELD_ERR_FORMAT, "'%s': not a safetensors or PyTorch checkpoint (%zu bytes)",
		  path, n);
	return NULL;
}
