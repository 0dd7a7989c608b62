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
 * name's stem, so it is never guessed). The archive is read by weld's
 * walker and by libzip (zip_archive.h).
 *
 * torch writes every record stored, 64-byte aligned: a tensor is then
 * registered with the absolute file offset of its element 0 and its
 * strides, after checking that its view lies inside its storage and the
 * storage inside its entry, and tensor data is never read here. A
 * checkpoint re-packed by another tool may hold deflated storages, which
 * cannot be read by byte range: each one a tensor uses is inflated once,
 * here, into one unlinked temporary file per checkpoint file (in $TMPDIR,
 * else /tmp), which the model then reads like the file. Memory stays at
 * one 1 MiB buffer; the disk used is the storages' declared size, which
 * must equal what the pickle declares, what deflate can produce from the
 * compressed bytes (1032:1 at most), and the free space of that folder,
 * all checked before anything is inflated.
 */
#include "format.h"
#include "state_dict.h"
#include "torch_zip.h"
#include "zip_archive.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* data.pkl takes ~150 bytes a tensor: this cap is far above real checkpoints. */
#define MAX_DATA_PKL (64ull << 20)
/*
 * A deflated data.pkl may inflate to this many times its compressed size
 * (real ones: 6 with protocol 2, 18 with protocol 4). The pickle's memory
 * budget grows with its inflated size, so this keeps what a small file can
 * make weld allocate proportional to the file, not to deflate's 1032:1.
 */
#define PKL_MAX_RATIO 64u
/* Deflate turns one byte into at most 1032 (a 258-byte match costs 2 bits). */
#define DEFLATE_MAX_RATIO 1032u

/* One checkpoint file being parsed. */
struct ckpt {
	weld_model *m;
	int file;
	const char *path;
	struct weld_zip z;
	const char *prefix;     /* "<prefix>/", plen bytes without the slash */
	size_t plen;
	struct weld_state_dict sd;
	struct slot *slots;     /* one per storage of sd */
	uint64_t inflated;      /* bytes the compressed storages in use inflate to */
	size_t ncompressed;
};

/* The zip entry of a storage, checked once, and where its bytes are. */
struct slot {
	const struct weld_zip_entry *entry;
	uint64_t copy_at;       /* deflated entry: offset of its copy in the temporary file */
};

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

static int check_byteorder(struct ckpt *c, struct weld_error *err)
{
	char *name = record_name(c->prefix, c->plen, "byteorder");
	const struct weld_zip_entry *e;
	unsigned char *v = NULL;
	int ret = 0;

	if (!name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	e = weld_zip_find(&c->z.dir, name);
	free(name);
	if (!e)
		return 0;
	if (weld_zip_read(&c->z, e, 16, &v, err) < 0)
		return -1;
	if (e->usize != 6 || memcmp(v, "little", 6))
		ret = weld_fail(err, WELD_ERR_FORMAT, "'%s': byteorder is not 'little'; weld "
				"reads little-endian checkpoints only", c->path);
	free(v);
	return ret;
}

/*
 * The entries of the archive that make it a torch.save() checkpoint: all
 * in one folder, a data.pkl, no TorchScript code; sets c->prefix.
 */
static int find_layout(struct ckpt *c, const struct weld_zip_entry **pkl,
		       struct weld_error *err)
{
	const char *slash;
	char *name;

	if (is_torchscript(&c->z.dir))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s' is a TorchScript archive "
				 "(torch.jit.save), not a state dict: load it with torch.jit.load() "
				 "and save its state_dict() with torch.save() or as safetensors",
				 c->path);
	if (!c->z.dir.n)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': empty zip archive, not a PyTorch "
				 "checkpoint", c->path);
	c->prefix = c->z.dir.entries[0].name;
	slash = strchr(c->prefix, '/');
	if (!slash)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s' is not in a folder: "
				 "not a PyTorch checkpoint", c->path, c->prefix);
	c->plen = (size_t)(slash - c->prefix);
	name = record_name(c->prefix, c->plen, "data.pkl");
	if (!name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	*pkl = weld_zip_find(&c->z.dir, name);
	if (!*pkl)
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip archive has no '%s': not a PyTorch "
			  "checkpoint", c->path, name);
	free(name);
	return *pkl ? 0 : -1;
}

/* Run data.pkl into c->sd; its errors are prefixed with the file. */
static int load_state_dict(struct ckpt *c, const struct weld_zip_entry *pkl,
			   struct weld_error *err)
{
	unsigned char *buf = NULL;
	int ret = -1;

	if (pkl->method != 0 && pkl->usize / PKL_MAX_RATIO > pkl->csize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': data.pkl: %llu compressed bytes "
				 "declare %llu, more than %u times as many: a state dict's pickle "
				 "does not compress so well", c->path,
				 (unsigned long long)pkl->csize, (unsigned long long)pkl->usize,
				 PKL_MAX_RATIO);
	if (weld_zip_read(&c->z, pkl, MAX_DATA_PKL, &buf, err) < 0)
		return -1;
	if (weld_state_dict_load(buf, (size_t)pkl->usize, &c->sd, err) < 0) {
		char msg[sizeof(err->msg)];

		/* err is non-NULL here only if the caller passed one. */
		if (err) {
			memcpy(msg, err->msg, sizeof(msg));
			weld_fail(err, err->status, "'%s': data.pkl: %s", c->path, msg);
		}
		goto out;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

/* ---------------------------------------------------------------- storages */

/*
 * A deflated storage entry: refused before anything is inflated unless
 * its declared size is the pickle's and the compressed bytes can reach it.
 */
static int check_deflated(const struct ckpt *c, const struct weld_sd_storage *s,
			  const char *tensor, const struct weld_zip_entry *e,
			  struct weld_error *err)
{
	if (e->method != 8)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is "
				 "compressed with method %u; weld reads stored or deflated entries "
				 "only", c->path, tensor, s->key, e->method);
	if (e->usize != s->nbytes)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is "
				 "declared as %llu bytes but its deflated record '%s' as %llu",
				 c->path, tensor, s->key, (unsigned long long)s->nbytes, e->name,
				 (unsigned long long)e->usize);
	if (e->usize / DEFLATE_MAX_RATIO > e->csize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s': record "
				 "'%s': %llu compressed bytes cannot inflate to the %llu its "
				 "uncompressed size declares", c->path, tensor, s->key, e->name,
				 (unsigned long long)e->csize, (unsigned long long)e->usize);
	return 0;
}

/* The entry of storage `si`, which `tensor` views, checked once. */
static int resolve_storage(struct ckpt *c, size_t si, const char *tensor,
			   struct weld_error *err)
{
	const struct weld_sd_storage *s = &c->sd.storages[si];
	struct slot *slot = &c->slots[si];
	char rest[32], *name;
	const struct weld_zip_entry *e;

	if (slot->entry)
		return 0;
	snprintf(rest, sizeof(rest), "data/%s", s->key);
	name = record_name(c->prefix, c->plen, rest);
	if (!name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	e = weld_zip_find(&c->z.dir, name);
	if (!e) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s': the archive has "
			  "no record '%s'", c->path, tensor, s->key, name);
		free(name);
		return -1;
	}
	free(name);
	if (e->method != 0) {
		if (check_deflated(c, s, tensor, e, err) < 0)
			return -1;
		/*
		 * No overflow: each is at most 1032 times its compressed size, and
		 * those add up to less than the file (entries do not overlap).
		 */
		c->inflated += e->usize;
		c->ncompressed++;
	} else if (e->csize != e->usize) {
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is stored "
				 "but its zip sizes differ (%llu and %llu)", c->path, tensor, s->key,
				 (unsigned long long)e->csize, (unsigned long long)e->usize);
	} else if (s->nbytes > e->usize) {
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is "
				 "declared as %llu bytes but its record holds %llu", c->path, tensor,
				 s->key, (unsigned long long)s->nbytes,
				 (unsigned long long)e->usize);
	}
	slot->entry = e;
	return 0;
}

/*
 * An unlinked temporary file in $TMPDIR (else /tmp), refused if its file
 * system has less than `need` bytes free; *dirp names the folder.
 */
static int create_copy_file(const struct ckpt *c, uint64_t need, const char **dirp,
			    struct weld_error *err)
{
	const char *dir = getenv("TMPDIR");
	struct statvfs vfs;
	uint64_t avail;
	int fd;

	if (!dir || !*dir)
		dir = "/tmp";
	*dirp = dir;
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char *tmpl = weld_path_join(dir, "weld-inflate-XXXXXX");

		if (!tmpl)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd >= 0)
			unlink(tmpl);
		free(tmpl);
	}
	if (fd < 0)
		return weld_fail_errno(err, "'%s': cannot create a temporary file in '%s' for its "
				       "deflated storages", c->path, dir);
	if (fstatvfs(fd, &vfs) == 0 &&
	    weld_mul_u64((uint64_t)vfs.f_bavail, (uint64_t)vfs.f_frsize, &avail) &&
	    avail < need) {
		close(fd);
		return weld_fail(err, WELD_ERR_IO, "'%s': its deflated storages inflate to %llu "
				 "bytes, more than the %llu free in '%s' (set TMPDIR to a folder "
				 "with room)", c->path, (unsigned long long)need,
				 (unsigned long long)avail, dir);
	}
	return fd;
}

/*
 * Inflate every deflated storage in use into one temporary file, handed
 * to the model as a data source; *source is its number (0: none needed).
 */
static int inflate_storages(struct ckpt *c, int *source, struct weld_error *err)
{
	const char *dir;
	char to[320];
	uint64_t at = 0;
	int fd;

	*source = 0;
	if (!c->ncompressed)
		return 0;
	fd = create_copy_file(c, c->inflated, &dir, err);
	if (fd < 0)
		return -1;
	/* The model owns fd from here on, even if this fails. */
	*source = weld_model_add_source(c->m, c->file, fd, err);
	if (*source < 0)
		return -1;
	snprintf(to, sizeof(to), "a temporary file in '%s'", dir);
	for (size_t i = 0; i < c->sd.nstorages; i++) {
		const struct weld_zip_entry *e = c->slots[i].entry;

		if (!e || e->method == 0)
			continue;
		c->slots[i].copy_at = at;
		if (weld_zip_extract(&c->z, e, fd, at, to, err) < 0)
			return -1;
		at += e->usize;
	}
	return 0;
}

static int register_tensors(struct ckpt *c, struct weld_error *err)
{
	int source;

	for (size_t i = 0; i < c->sd.ntensors; i++)
		if (resolve_storage(c, c->sd.tensors[i].storage, c->sd.tensors[i].name, err) < 0)
			return -1;
	if (inflate_storages(c, &source, err) < 0)
		return -1;
	for (size_t i = 0; i < c->sd.ntensors; i++) {
		const struct weld_sd_tensor *t = &c->sd.tensors[i];
		const struct slot *slot = &c->slots[t->storage];
		const bool deflated = slot->entry->method != 0;
		struct weld_tensor_info info = { 0 };

		info.name = t->name;
		info.dtype = t->dtype;
		info.ndim = t->ndim;
		memcpy(info.shape, t->shape, sizeof(info.shape));
		memcpy(info.stride, t->stride, sizeof(info.stride));
		info.nelem = t->nelem;
		info.nbytes = t->nbytes;
		info.file = c->file;
		/*
		 * Cannot overflow: a stored record ends before the central directory,
		 * an inflated one inside the temporary file, and the view ends inside
		 * the record (checked by state_dict.c).
		 */
		info.offset = (deflated ? slot->copy_at : slot->entry->data) + t->byte_offset;
		info.contiguous = t->contiguous;
		if (weld_model_add_tensor_in(c->m, &info, deflated ? source : 0, err) < 0)
			return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- the format */

/* Check the zip archive, run its data.pkl and register its tensors. */
static int torch_parse(weld_model *m, int file, struct weld_error *err)
{
	struct ckpt c = { .m = m, .file = file };
	const struct weld_zip_entry *pkl = NULL;
	int ret = -1;

	c.path = weld_model_file_path(m, (size_t)file);
	if (weld_zip_open(&c.z, weld_model_file_fd(m, file), weld_model_file_size(m, file),
			  c.path, err) < 0)
		return -1;
	if (find_layout(&c, &pkl, err) < 0 || check_byteorder(&c, err) < 0 ||
	    load_state_dict(&c, pkl, err) < 0)
		goto out;
	if (c.sd.ntensors > WELD_MAX_TENSORS_PER_FILE) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': data.pkl: more than %u tensors (the limit "
			  "of a file)", c.path, WELD_MAX_TENSORS_PER_FILE);
		goto out;
	}
	c.slots = calloc(c.sd.nstorages ? c.sd.nstorages : 1, sizeof(*c.slots));
	if (!c.slots) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (register_tensors(&c, err) < 0)
		goto out;
	ret = 0;
out:
	free(c.slots);
	weld_state_dict_free(&c.sd);
	weld_zip_close(&c.z);
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
