/*
 * registry.c - the formats weld reads, in the order their probes are tried.
 *
 * Each format's file defines its row (name, probe, parse, damaged; see
 * format.h). Adding a format is writing that file and listing its row here.
 * A file no probe claims is a damaged safetensors file only when it looks
 * like one (safetensors.c): a header length the file can hold, or a '{'
 * where the header starts; anything else, a text file or a config.json
 * given as a model, is "not a safetensors or PyTorch checkpoint".
 */
#include "format.h"

static const struct weld_format *const formats[] = {
	&weld_torch_zip_format,
	&weld_torch_legacy_format,
	&weld_safetensors_format,
	&weld_gguf_format,
};

#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

const struct weld_format *weld_format_detect(const unsigned char *head, size_t n,
					     uint64_t size, const char *path,
					     struct weld_error *err)
{
	for (size_t i = 0; i < NFORMATS; i++)
		if (formats[i]->probe(head, n))
			return formats[i];
	for (size_t i = 0; i < NFORMATS; i++)
		if (formats[i]->damaged && formats[i]->damaged(head, n, size))
			return formats[i];
	weld_fail(err, WELD_ERR_FORMAT, "'%s': not a safetensors or PyTorch checkpoint (%llu bytes)",
		  path, (unsigned long long)size);
	return NULL;
}
