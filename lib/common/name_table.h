/*
 * name_table.h - a set of names, each with a value (an index), where
 * adding and finding a name cost the same whatever the number of names:
 * open addressing with linear probing, keyed by the XXH3-64 of the name
 * with a seed drawn once per process (so that a file cannot choose names
 * that fall on one slot). Two names are compared byte by byte only when
 * their 64-bit hashes are equal, which for distinct names practically never
 * happens; `compares` counts those comparisons, so that a test can check
 * that a lookup does not walk the names.
 *
 * The table borrows the names: each must stay valid and unchanged while the
 * table is in use. A table that init failed to fill, or an all-zero one, may
 * be freed.
 */
#ifndef WELD_NAME_TABLE_H
#define WELD_NAME_TABLE_H

#include "base.h"

struct weld_name_slot {
	const char *name;       /* NULL: empty */
	uint64_t hash;
	size_t value;
};

struct weld_name_table {
	struct weld_name_slot *slots;   /* cap slots, cap a power of 2 */
	size_t cap, n;
	uint64_t seed;
	uint64_t compares;      /* byte-by-byte name comparisons so far */
};

/* An empty table with room for n names before it grows. 0, or -1 when
 * out of memory. */
int weld_name_table_init(struct weld_name_table *t, size_t n);
/*
 * Add name with value. Returns 0 when added; 1 when the name is already in
 * the table (nothing changes; *old, if not NULL, gets the value it has);
 * -1 when out of memory.
 */
int weld_name_table_add(struct weld_name_table *t, const char *name, size_t value,
			size_t *old);
/* The value of name in *value (if not NULL): true, or false if absent. */
bool weld_name_table_find(struct weld_name_table *t, const char *name, size_t *value);
void weld_name_table_free(struct weld_name_table *t);

#endif
