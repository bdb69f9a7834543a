/*
 * safetensors reader: mmap each file, validate its JSON header into a flat array
 * of wd_tensor_info, merge the files of a sharded checkpoint and sort by name.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the data section; offsets are relative to
 * the start of the data section. Holes between tensors are allowed (the format
 * does not need them but nothing breaks); overlaps are not.
 * Memory: per file one mapping, one block of entries and one block of names; the
 * entries of all files end up in one array sorted by name, so find is a bsearch.
 */
#include "common/model/safetensors.h"
#include "common/util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config/json_reader.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define INDEX_MAX_BYTES (64u * 1024u * 1024u)
#define PATH_CAP 4096

struct st_entry {
    struct wd_tensor_info info;
    uint32_t file; /* index into wd_safetensors.files */
};

struct st_file {
    char *label; /* path for messages (shard file name for sharded checkpoints) */
    void *map;   /* NULL when not ours (wd_safetensors_parse) or for an empty file */
    size_t map_len;
    char *names; /* the names of this file's tensors, NUL-separated */
};

struct wd_safetensors {
    struct st_entry *entries; /* sorted by name once every file is in */
    size_t n_entries, cap_entries;
    struct st_file *files;
    size_t n_files;
};

void wd_safetensors_close(struct wd_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_files; i++) {
        struct st_file *f = &st->files[i];
        if (f->map)
            munmap(f->map, f->map_len);
        free(f->names);
        free(f->label);
    }
    free(st->files);
    free(st->entries);
    free(st);
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp(((const struct st_entry *)a)->info.name, ((const struct st_entry *)b)->info.name);
}

struct byte_range {
    size_t begin, end;
    const char *name;
};

static int cmp_range(const void *a, const void *b)
{
    const struct byte_range *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Reads a non-negative JSON integer; 0 when it is not one. */
static int get_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* Validates one tensor entry of a header and fills t (name set by the caller). */
static enum wd_status parse_entry(const char *label, const char *name, const json_t *e,
                                  const uint8_t *data, size_t data_len, struct wd_tensor_info *t,
                                  struct wd_error *err)
{
    if (!json_is_object(e))
        return wd_error_set(err, WD_ERR_FORMAT, "%s: tensor %s: entry is not a JSON object", label,
                            name);
    const json_t *dt = json_object_get(e, "dtype");
    const json_t *shape = json_object_get(e, "shape");
    const json_t *offs = json_object_get(e, "data_offsets");
    if (!json_is_string(dt))
        return wd_error_set(err, WD_ERR_FORMAT, "%s: tensor %s: 'dtype' missing or not a string",
                            label, name);
    int dtype = wd_dtype_parse(json_string_value(dt));
    if (dtype < 0)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "%s: tensor %s: unsupported dtype '%s' (supported: F32, F16, BF16, "
                            "F8_E4M3, I64, I32)",
                            label, name, json_string_value(dt));
    if (!json_is_array(shape))
        return wd_error_set(err, WD_ERR_FORMAT, "%s: tensor %s: 'shape' missing or not an array",
                            label, name);
    size_t n_dims = json_array_size(shape);
    if (n_dims > WD_MAX_DIMS)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "%s: tensor %s: %zu dims, at most %d supported", label, name, n_dims,
                            WD_MAX_DIMS);
    memset(t, 0, sizeof(*t));
    uint64_t nelem = 1;
    int overflow = 0;
    for (size_t d = 0; d < n_dims; d++) {
        uint64_t dim;
        if (!get_uint(json_array_get(shape, d), &dim))
            return wd_error_set(err, WD_ERR_FORMAT,
                                "%s: tensor %s: shape[%zu] is not a non-negative integer", label,
                                name, d);
        t->shape[d] = (int64_t)dim;
        overflow |= __builtin_mul_overflow(nelem, dim, &nelem);
    }
    uint64_t nbytes;
    overflow |= __builtin_mul_overflow(nelem, (uint64_t)wd_dtype_size(dtype), &nbytes);
    if (overflow || nbytes > SIZE_MAX)
        return wd_error_set(err, WD_ERR_FORMAT, "%s: tensor %s: shape size overflows", label, name);
    uint64_t begin, end;
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !get_uint(json_array_get(offs, 0), &begin) || !get_uint(json_array_get(offs, 1), &end))
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: tensor %s: 'data_offsets' must be [begin, end] of non-negative "
                            "integers",
                            label, name);
    if (begin > end)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: tensor %s: data_offsets [%llu, %llu] end "
                            "before begin",
                            label, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: tensor %s: data_offsets [%llu, %llu] outside the data section "
                            "(%zu bytes)",
                            label, name, (unsigned long long)begin, (unsigned long long)end,
                            data_len);
    if (end - begin != nbytes)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: tensor %s: data_offsets span %llu bytes but shape and dtype %s "
                            "need %llu",
                            label, name, (unsigned long long)(end - begin), wd_dtype_name(dtype),
                            (unsigned long long)nbytes);
    /* Kernels read data through typed pointers; every real writer pads the header to 8 bytes
     * and orders tensors by alignment, so a misaligned tensor means a broken file. */
    size_t align = wd_dtype_size(dtype);
    if (((uintptr_t)(data + begin)) % align != 0)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: tensor %s: data at data_offsets begin %llu is not aligned to its "
                            "%zu-byte dtype %s",
                            label, name, (unsigned long long)begin, align, wd_dtype_name(dtype));
    t->dtype = (enum wd_dtype)dtype;
    t->n_dims = (int)n_dims;
    t->data = data + begin;
    t->nbytes = (size_t)nbytes;
    return WD_OK;
}

static enum wd_status check_metadata(const char *label, const json_t *meta, struct wd_error *err)
{
    if (!json_is_object(meta))
        return wd_error_set(err, WD_ERR_FORMAT, "%s: __metadata__ is not a JSON object", label);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)meta, key, v)
    {
        if (!json_is_string(v))
            return wd_error_set(err, WD_ERR_FORMAT,
                                "%s: __metadata__ value of '%s' is not a string", label, key);
    }
    return WD_OK;
}

/* Rejects two tensors whose non-empty byte ranges share a byte. */
static enum wd_status check_overlaps(const char *label, const struct st_entry *ents, size_t n,
                                     const uint8_t *data, struct wd_error *err)
{
    if (n < 2)
        return WD_OK;
    struct byte_range *r = malloc(n * sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", label);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (ents[i].info.nbytes == 0)
            continue;
        size_t b = (size_t)((const uint8_t *)ents[i].info.data - data);
        r[m++] = (struct byte_range){b, b + ents[i].info.nbytes, ents[i].info.name};
    }
    qsort(r, m, sizeof(*r), cmp_range);
    enum wd_status st = WD_OK;
    for (size_t i = 1; i < m; i++) {
        if (r[i].begin < r[i - 1].end) {
            st = wd_error_set(
                err, WD_ERR_FORMAT, "%s: tensors %s [%zu, %zu) and %s [%zu, %zu) overlap", label,
                r[i - 1].name, r[i - 1].begin, r[i - 1].end, r[i].name, r[i].begin, r[i].end);
            break;
        }
    }
    free(r);
    return st;
}

/*
 * Parses one file's bytes. On success *ents_p (malloc'd, n_p entries, unsorted) and
 * *names_p (malloc'd name block the entries point into) belong to the caller; each entry's
 * file is set to file_idx. On error nothing is allocated.
 */
static enum wd_status parse_file(const char *label, const uint8_t *buf, size_t len,
                                 uint32_t file_idx, struct st_entry **ents_p, size_t *n_p,
                                 char **names_p, struct wd_error *err)
{
    if (len < 8)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: file is %zu bytes, shorter than the 8-byte header length", label,
                            len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > WD_SAFETENSORS_MAX_HEADER)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: header length %llu exceeds the limit of %u bytes", label,
                            (unsigned long long)hlen, WD_SAFETENSORS_MAX_HEADER);
    if (hlen > len - 8)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "%s: header length %llu exceeds the file size (%zu bytes after the "
                            "length)",
                            label, (unsigned long long)hlen, len - 8);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return wd_error_set(err, WD_ERR_FORMAT, "%s: header is not valid JSON: %s at byte %d",
                            label, jerr.text, jerr.position);
    enum wd_status st = WD_OK;
    struct st_entry *ents = NULL;
    char *names = NULL;
    if (!json_is_object(root)) {
        st = wd_error_set(err, WD_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto out_root;
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;

    /* First pass: size the two blocks. */
    size_t n = 0, names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            st = check_metadata(label, val, err);
            if (st != WD_OK)
                goto out_root;
            continue;
        }
        if (key[0] == 0) {
            st = wd_error_set(err, WD_ERR_FORMAT, "%s: empty tensor name", label);
            goto out_root;
        }
        n++;
        names_len += strlen(key) + 1;
    }
    ents = malloc((n ? n : 1) * sizeof(*ents));
    names = malloc(names_len ? names_len : 1);
    if (!ents || !names) {
        st = wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory for %zu tensors", label, n);
        goto out_blocks;
    }

    /* Second pass: validate and fill. */
    size_t i = 0, pos = 0;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        size_t kl = strlen(key) + 1;
        memcpy(names + pos, key, kl);
        ents[i].file = file_idx;
        st = parse_entry(label, key, val, data, data_len, &ents[i].info, err);
        if (st != WD_OK)
            goto out_blocks;
        ents[i].info.name = names + pos;
        pos += kl;
        i++;
    }
    st = check_overlaps(label, ents, n, data, err);
    if (st != WD_OK)
        goto out_blocks;
    *ents_p = ents;
    *n_p = n;
    *names_p = names;
    json_decref(root);
    return WD_OK;

out_blocks:
    free(ents);
    free(names);
out_root:
    json_decref(root);
    return st;
}

/* Maps path read-only. An empty file gets no mapping (mmap refuses length 0). */
static enum wd_status map_file(const char *path, void **map_p, size_t *len_p, struct wd_error *err)
{
    int fd;
    size_t file_size;
    WD_CHECK(wd_file_open_regular(path, &fd, &file_size, err));
    size_t len = file_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return wd_error_set(err, WD_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, len,
                                strerror(e));
        }
    }
    close(fd); /* the mapping keeps the file open */
    *map_p = map;
    *len_p = len;
    return WD_OK;
}

/* Allocates an empty object able to hold n_files files. */
static enum wd_status st_alloc(size_t n_files, struct wd_safetensors **st_p, struct wd_error *err)
{
    struct wd_safetensors *st = calloc(1, sizeof(*st));
    if (st)
        st->files = calloc(n_files ? n_files : 1, sizeof(*st->files));
    if (!st || !st->files) {
        free(st);
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    }
    *st_p = st;
    return WD_OK;
}

/* Maps and parses file number st->n_files (label is taken over), appending its tensors. */
static enum wd_status st_add_file(struct wd_safetensors *st, const char *path, char *label,
                                  struct wd_error *err)
{
    struct st_file *f = &st->files[st->n_files++];
    f->label = label;
    enum wd_status s = map_file(path, &f->map, &f->map_len, err);
    if (s != WD_OK)
        return s;
    struct st_entry *ents;
    size_t n;
    s = parse_file(path, f->map, f->map_len, (uint32_t)(st->n_files - 1), &ents, &n, &f->names,
                   err);
    if (s != WD_OK)
        return s;
    if (st->n_entries == 0) {
        free(st->entries);
        st->entries = ents;
        st->n_entries = st->cap_entries = n;
        return WD_OK;
    }
    if (st->n_entries + n > st->cap_entries) { /* doubling: 163 shards for DeepSeek-V3 */
        size_t cap =
            st->cap_entries * 2 > st->n_entries + n ? st->cap_entries * 2 : st->n_entries + n;
        struct st_entry *all = realloc(st->entries, cap * sizeof(*all));
        if (!all) {
            free(ents);
            return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", path);
        }
        st->entries = all;
        st->cap_entries = cap;
    }
    memcpy(st->entries + st->n_entries, ents, n * sizeof(*ents));
    free(ents);
    st->n_entries += n;
    return WD_OK;
}

/* Sorts the merged entries by name and rejects a name found in two files. */
static enum wd_status st_finish(struct wd_safetensors *st, struct wd_error *err)
{
    qsort(st->entries, st->n_entries, sizeof(*st->entries), cmp_entry_name);
    for (size_t i = 1; i < st->n_entries; i++) {
        const struct st_entry *a = &st->entries[i - 1], *b = &st->entries[i];
        if (strcmp(a->info.name, b->info.name) == 0)
            return wd_error_set(err, WD_ERR_FORMAT, "tensor %s is in both %s and %s", a->info.name,
                                st->files[a->file].label, st->files[b->file].label);
    }
    return WD_OK;
}

enum wd_status wd_safetensors_parse(const uint8_t *buf, size_t len, struct wd_safetensors **st_p,
                                    struct wd_error *err)
{
    struct wd_safetensors *st;
    WD_CHECK(st_alloc(1, &st, err));
    struct st_file *f = &st->files[0];
    st->n_files = 1;
    f->label = strdup("<memory>");
    enum wd_status s = f->label ? WD_OK : wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    if (s == WD_OK)
        s = parse_file("<memory>", buf, len, 0, &st->entries, &st->n_entries, &f->names, err);
    if (s == WD_OK)
        s = st_finish(st, err);
    if (s != WD_OK) {
        wd_safetensors_close(st);
        return s;
    }
    *st_p = st;
    return WD_OK;
}

enum wd_status wd_safetensors_open_file(const char *path, struct wd_safetensors **st_p,
                                        struct wd_error *err)
{
    struct wd_safetensors *st;
    WD_CHECK(st_alloc(1, &st, err));
    char *label = strdup(path);
    enum wd_status s = label ? st_add_file(st, path, label, err)
                             : wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    if (s == WD_OK)
        s = st_finish(st, err);
    if (s != WD_OK) {
        wd_safetensors_close(st);
        return s;
    }
    *st_p = st;
    return WD_OK;
}

/* A shard name from the index: a plain file name in the model directory. */
static int shard_name_ok(const char *s)
{
    return s[0] != 0 && strchr(s, '/') == NULL && strstr(s, "..") == NULL;
}

static int cmp_str_p(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const struct st_entry *find_entry(const struct wd_safetensors *st, const char *name)
{
    size_t lo = 0, hi = st->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->entries[mid].info.name);
        if (c == 0)
            return &st->entries[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Checks that the tensors found are exactly those of the weight map, each in its shard. */
static enum wd_status check_against_index(const struct wd_safetensors *st, const char *index_path,
                                          const json_t *wmap, struct wd_error *err)
{
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)wmap, name, v)
    {
        const char *shard = json_string_value(v);
        const struct st_entry *e = find_entry(st, name);
        if (!e)
            return wd_error_set(err, WD_ERR_NOT_FOUND,
                                "%s: tensor %s is listed for shard %s but missing from it",
                                index_path, name, shard);
        const char *in = st->files[e->file].label;
        if (strcmp(in, shard) != 0)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "%s: tensor %s is listed for shard %s but found in %s", index_path,
                                name, shard, in);
    }
    for (size_t i = 0; i < st->n_entries; i++) {
        const struct st_entry *e = &st->entries[i];
        if (!json_object_get(wmap, e->info.name))
            return wd_error_set(err, WD_ERR_FORMAT, "%s: tensor %s of shard %s is not listed",
                                index_path, e->info.name, st->files[e->file].label);
    }
    return WD_OK;
}

/* Opens the shards named by a parsed index; *st_p written on success. */
static enum wd_status open_sharded(const char *dir, const char *index_path, const json_t *root,
                                   struct wd_safetensors **st_p, struct wd_error *err)
{
    const json_t *wmap = json_object_get(root, "weight_map");
    if (!json_is_object(wmap))
        return wd_error_set(err, WD_ERR_FORMAT, "%s: 'weight_map' missing or not an object",
                            index_path);
    size_t n_names = json_object_size(wmap);
    if (n_names == 0)
        return wd_error_set(err, WD_ERR_FORMAT, "%s: 'weight_map' is empty", index_path);
    const char **shards = malloc(n_names * sizeof(*shards));
    if (!shards)
        return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", index_path);
    size_t n_shards = 0;
    const char *name;
    const json_t *v;
    enum wd_status s = WD_OK;
    json_object_foreach((json_t *)wmap, name, v)
    {
        if (!json_is_string(v)) {
            s = wd_error_set(err, WD_ERR_FORMAT, "%s: weight_map[%s] is not a string", index_path,
                             name);
            goto out_shards;
        }
        if (!shard_name_ok(json_string_value(v))) {
            s = wd_error_set(err, WD_ERR_FORMAT,
                             "%s: weight_map[%s]: shard name '%s' must be a plain file name "
                             "(no '/' or '..')",
                             index_path, name, json_string_value(v));
            goto out_shards;
        }
        shards[n_shards++] = json_string_value(v);
    }
    qsort(shards, n_shards, sizeof(*shards), cmp_str_p);
    size_t n_unique = 0;
    for (size_t i = 0; i < n_shards; i++)
        if (n_unique == 0 || strcmp(shards[i], shards[n_unique - 1]) != 0)
            shards[n_unique++] = shards[i];

    struct wd_safetensors *st;
    s = st_alloc(n_unique, &st, err);
    if (s != WD_OK)
        goto out_shards;
    for (size_t i = 0; i < n_unique && s == WD_OK; i++) {
        char path[PATH_CAP];
        if (snprintf(path, sizeof(path), "%s/%s", dir, shards[i]) >= (int)sizeof(path)) {
            s = wd_error_set(err, WD_ERR_INVALID, "%s/%s: path too long", dir, shards[i]);
            break;
        }
        char *label = strdup(shards[i]);
        s = label ? st_add_file(st, path, label, err)
                  : wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    }
    if (s == WD_OK)
        s = st_finish(st, err);
    if (s == WD_OK)
        s = check_against_index(st, index_path, wmap, err);
    if (s != WD_OK)
        wd_safetensors_close(st);
    else
        *st_p = st;
out_shards:
    free(shards);
    return s;
}

enum wd_status wd_safetensors_open(const char *model_dir, struct wd_safetensors **st_p,
                                   struct wd_error *err)
{
    char path[PATH_CAP];
    if (snprintf(path, sizeof(path), "%s/%s", model_dir, INDEX_NAME) >= (int)sizeof(path))
        return wd_error_set(err, WD_ERR_INVALID, "%s: path too long", model_dir);
    char *text;
    size_t len;
    enum wd_status s = wd_json_reader_read_file(path, INDEX_MAX_BYTES, &text, &len, err);
    if (s == WD_ERR_NOT_FOUND) {
        snprintf(path, sizeof(path), "%s/%s", model_dir, SINGLE_NAME);
        s = wd_safetensors_open_file(path, st_p, err);
        if (s == WD_ERR_NOT_FOUND)
            wd_error_set(err, s, "%s: neither %s nor %s found", model_dir, INDEX_NAME, SINGLE_NAME);
        return s;
    }
    if (s != WD_OK)
        return s;
    json_t *root;
    s = wd_json_reader_parse(text, len, path, &root, err);
    free(text);
    if (s != WD_OK)
        return s;
    s = open_sharded(model_dir, path, root, st_p, err);
    json_decref(root);
    return s;
}

const struct wd_tensor_info *wd_safetensors_find(const struct wd_safetensors *st, const char *name)
{
    const struct st_entry *e = find_entry(st, name);
    return e ? &e->info : NULL;
}

/* Writes "[a, b, c]" into buf. */
static void format_shape(char *buf, size_t cap, int n_dims, const int64_t *shape)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < n_dims && pos < cap; d++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (pos < cap)
        snprintf(buf + pos, cap - pos, "]");
}

enum wd_status wd_safetensors_get(const struct wd_safetensors *st, const char *name, int n_dims,
                                  const int64_t *shape, const struct wd_tensor_info **t_p,
                                  struct wd_error *err)
{
    const struct wd_tensor_info *t = wd_safetensors_find(st, name);
    if (!t)
        return wd_error_set(err, WD_ERR_NOT_FOUND, "tensor %s: missing from checkpoint", name);
    int same = t->n_dims == n_dims;
    for (int d = 0; same && d < n_dims; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        char have[160], want[160];
        format_shape(have, sizeof(have), t->n_dims, t->shape);
        format_shape(want, sizeof(want), n_dims, shape);
        return wd_error_set(err, WD_ERR_FORMAT, "tensor %s: shape %s expected %s", name, have,
                            want);
    }
    *t_p = t;
    return WD_OK;
}

size_t wd_safetensors_count(const struct wd_safetensors *st)
{
    return st->n_entries;
}

const struct wd_tensor_info *wd_safetensors_at(const struct wd_safetensors *st, size_t i)
{
    WD_ASSERT(i < st->n_entries);
    return &st->entries[i].info;
}
