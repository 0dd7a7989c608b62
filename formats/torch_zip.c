/*
 * torch_zip.c - PyTorch checkpoints written by torch.save() (torch >= 1.6):
 * a zip archive whose entries all live under one folder <prefix>/:
 *
 *   <prefix>/data.pkl        the pickled state dict (see state_dict.h)
 *   <prefix>/data/<key>      raw little-endian bytes of storage <key>
 *   <prefix>/byteorder       "little" or "big" (torch >= 2.1; absent: little)
 *   <prefix>/version, .format_version, .storage_alignment, .data/...  ignored
 *
 * The prefix is the first entry's folder (torch uses "archive" or the file
 * name's stem, so it is never guessed). torch writes every record stored,
 * 64-byte aligned by an "FB" extra field in its local header (the archive
 * itself is read by zip_dir.c).
 *
 * Tensor data is never read here: each tensor is registered with the
 * absolute offset of its element 0 and its strides, after checking that its
 * view lies inside its storage and the storage inside its stored entry.
 */
#include "format.h"
#include "state_dict.h"
#include "torch_zip.h"
#include "zip_archive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* data.pkl takes ~150 bytes a tensor: this cap is far above real checkpoints. */
#define MAX_DATA_PKL (64ull << 20)

bool weld_torch_probe(const unsigned char *head, size_t n)
{
	return n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
}

/* ---------------------------------------------------------------- torch */

/* A TorchScript archive holds code/ and constants.pkl next to data.pkl. */
static bool is_torchscript(const struct weld_zip_dir *dir)
{
	for (size_t i = 0; i < dir->n; i++) {
		const char *slash = strchr(dir->entries[i].name, '/');

		if (slash && (!strcmp(slash + 1, "constants.pkl") ||
			      !strncmp(slash + 1, "code/", 5)))
			return true;
	}
	return false;
}

/* "<prefix>/<rest>" in a new string. */
static char *record_name(const char *prefix, size_t plen, const char *rest)
{
	size_t rlen = strlen(rest);
	char *s = malloc(plen + 1 + rlen + 1);

	if (s) {
		memcpy(s, prefix, plen);
		s[plen] = '/';
		memcpy(s + plen + 1, rest, rlen + 1);
	}
	return s;
}

static int check_byteorder(struct weld_zip *z, const char *prefix, size_t plen,
			   struct weld_error *err)
{
	char *name = record_name(prefix, plen, "byteorder");
	const struct weld_zip_entry *e;
	unsigned char *v = NULL;
	int ret = 0;

	if (!name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	e = weld_zip_find(&z->dir, name);
	free(name);
	if (!e)
		return 0;
	if (weld_zip_read(z, e, 16, &v, err) < 0)
		return -1;
	if (e->usize != 6 || memcmp(v, "little", 6))
		ret = weld_fail(err, WELD_ERR_FORMAT, "'%s': byteorder is not 'little'; weld "
				"reads little-endian checkpoints only", z->path);
	free(v);
	return ret;
}

/* The zip entry of a storage, checked once per storage. */
struct storage_slot {
	const struct weld_zip_entry *entry;
};

static int resolve_storage(const char *path, const struct weld_zip_dir *dir,
			   const char *prefix, size_t plen,
			   const struct weld_sd_storage *s, const char *tensor,
			   struct storage_slot *slot, struct weld_error *err)
{
	char rest[32], *name;
	const struct weld_zip_entry *e;

	if (slot->entry)
		return 0;
	snprintf(rest, sizeof(rest), "data/%s", s->key);
	name = record_name(prefix, plen, rest);
	if (!name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	e = weld_zip_find(dir, name);
	if (!e) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s': the archive has "
			  "no record '%s'", path, tensor, s->key, name);
		free(name);
		return -1;
	}
	free(name);
	if (e->method != 0)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is "
				 "compressed (method %u); weld reads stored entries only",
				 path, tensor, s->key, e->method);
	if (e->csize != e->usize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is stored "
				 "but its zip sizes differ (%llu and %llu)", path, tensor, s->key,
				 (unsigned long long)e->csize, (unsigned long long)e->usize);
	if (s->nbytes > e->usize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is "
				 "declared as %llu bytes but its record holds %llu", path, tensor,
				 s->key, (unsigned long long)s->nbytes,
				 (unsigned long long)e->usize);
	slot->entry = e;
	return 0;
}

static int register_tensors(weld_model *m, int file, const struct weld_zip_dir *dir,
			    const char *prefix, size_t plen,
			    const struct weld_state_dict *r, struct weld_error *err)
{
	struct storage_slot *slots = calloc(r->nstorages ? r->nstorages : 1, sizeof(*slots));
	const char *path = weld_model_file_path(m, (size_t)file);
	int ret = -1;

	if (!slots)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < r->ntensors; i++) {
		const struct weld_sd_tensor *t = &r->tensors[i];
		struct weld_tensor_info info = { 0 };

		if (resolve_storage(path, dir, prefix, plen, &r->storages[t->storage], t->name,
				    &slots[t->storage], err) < 0)
			goto out;
		info.name = t->name;
		info.dtype = t->dtype;
		info.ndim = t->ndim;
		memcpy(info.shape, t->shape, sizeof(info.shape));
		memcpy(info.stride, t->stride, sizeof(info.stride));
		info.nelem = t->nelem;
		info.nbytes = t->nbytes;
		info.file = file;
		/*
		 * Cannot overflow: the record ends before the central directory and the
		 * view ends inside the record (checked by the pickle layer).
		 */
		info.offset = slots[t->storage].entry->data + t->byte_offset;
		info.contiguous = t->contiguous;
		if (weld_model_add_tensor(m, &info, err) < 0)
			goto out;
	}
	ret = 0;
out:
	free(slots);
	return ret;
}

/* Check the zip archive, run its data.pkl and register its tensors. */
static int torch_parse(weld_model *m, int file, struct weld_error *err)
{
	int fd = weld_model_file_fd(m, file);
	uint64_t size = weld_model_file_size(m, file);
	const char *path = weld_model_file_path(m, (size_t)file);
	struct weld_zip z;
	struct weld_state_dict res = { 0 };
	const struct weld_zip_entry *pkl;
	unsigned char *buf = NULL;
	const char *prefix, *slash;
	char *name = NULL;
	size_t plen;
	int ret = -1;

	if (weld_zip_open(&z, fd, size, path, err) < 0)
		return -1;
	if (is_torchscript(&z.dir)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s' is a TorchScript archive (torch.jit.save), "
			  "not a state dict: load it with torch.jit.load() and save its "
			  "state_dict() with torch.save() or as safetensors", path);
		goto out;
	}
	if (!z.dir.n) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': empty zip archive, not a PyTorch "
			  "checkpoint", path);
		goto out;
	}
	prefix = z.dir.entries[0].name;
	slash = strchr(prefix, '/');
	if (!slash) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s' is not in a folder: not a "
			  "PyTorch checkpoint", path, prefix);
		goto out;
	}
	plen = (size_t)(slash - prefix);
	name = record_name(prefix, plen, "data.pkl");
	if (!name) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	pkl = weld_zip_find(&z.dir, name);
	if (!pkl) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip archive has no '%s': not a PyTorch "
			  "checkpoint", path, name);
		goto out;
	}
	if (check_byteorder(&z, prefix, plen, err) < 0 ||
	    weld_zip_read(&z, pkl, MAX_DATA_PKL, &buf, err) < 0)
		goto out;
	if (weld_state_dict_load(buf, (size_t)pkl->usize, &res, err) < 0) {
		char msg[sizeof(err->msg)];

		/* err is non-NULL here only if the caller passed one. */
		if (err) {
			memcpy(msg, err->msg, sizeof(msg));
			weld_fail(err, err->status, "'%s': data.pkl: %s", path, msg);
		}
		goto out;
	}
	if (register_tensors(m, file, &z.dir, prefix, plen, &res, err) < 0)
		goto out;
	ret = 0;
out:
	weld_state_dict_free(&res);
	free(buf);
	free(name);
	weld_zip_close(&z);
	return ret;
}

static int refuse_legacy(weld_model *m, int file, struct weld_error *err)
{
	return weld_fail(err, WELD_ERR_FORMAT,
			 "'%s': legacy PyTorch (pre-1.6) checkpoint: re-save it with a current torch, or convert it to safetensors",
			 weld_model_file_path(m, (size_t)file));
}

const struct weld_format weld_torch_zip_format = {
	.name = "pytorch",
	.probe = weld_torch_probe,
	.parse = torch_parse,
};

const struct weld_format weld_torch_legacy_format = {
	.name = "pytorch",
	.probe = weld_torch_legacy_probe,
	.parse = refuse_legacy,
};

/*
 * Legacy files open with the pickle of a magic number:
 * \x80 <proto> [\x95 <8-byte frame length>] \x8a \x0a <10 bytes LE>.
 */
bool weld_torch_legacy_probe(const unsigned char *head, size_t n)
{
	static const unsigned char magic[10] = {
		0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19
	};
	size_t i = 2;

	if (n < 2 || head[0] != 0x80 || head[1] < 2 || head[1] > 5)
		return false;
	if (n > i && head[i] == 0x95)
		i += 9;
	return n >= i + 12 && head[i] == 0x8a && head[i + 1] == 10 &&
	       !memcmp(head + i + 2, magic, sizeof(magic));
}
