/*
 * auth.c — admin key generation, storage and checking (see auth.h).
 *
 * Keys are 32 random bytes written as "tr_" + 64 hex characters: URL-safe, so they also
 * work as ?adminKey=. The file holds "blake2b:<salt hex>:<hash hex>"; a salted fast hash
 * is enough because generated keys carry 256 bits of entropy. The file is replaced
 * atomically (write to a temporary name, fsync, rename), and the checker compares the
 * file's identity (inode, size, mtime) on every check so a rotation takes effect at once
 * without a restart; that costs one stat() per request.
 */
#include "http/auth.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUTH_SALT_LEN 16
#define AUTH_HASH_LEN 32
#define AUTH_KEY_BYTES 32

struct auth {
    char *path;  /* NULL when the key was given on the command line */
    pthread_mutex_t mu;
    unsigned char salt[AUTH_SALT_LEN];
    unsigned char hash[AUTH_HASH_LEN];
    struct stat seen;  /* identity of the file the hash came from */
};

static void key_hash(const unsigned char salt[AUTH_SALT_LEN], const char *key, size_t len,
                     unsigned char out[AUTH_HASH_LEN]) {
    crypto_generichash(out, AUTH_HASH_LEN, (const unsigned char *)key, len, salt, AUTH_SALT_LEN);
}

static char *key_path(const char *data_dir) {
    size_t n = strlen(data_dir) + sizeof "/admin_key";
    char *p = xmalloc(n);
    snprintf(p, n, "%s/admin_key", data_dir);
    return p;
}

static int read_hash_file(const char *path, unsigned char salt[AUTH_SALT_LEN],
                          unsigned char hash[AUTH_HASH_LEN], struct stat *st, tr_err *e) {
    FILE *f = fopen(path, "r");
    if (!f) return err_set(e, 500, "StorageError", "cannot read %s: %s", path, strerror(errno));
    char line[256] = {0};
    int ok = fgets(line, sizeof line, f) != NULL;
    if (ok && fstat(fileno(f), st) != 0) ok = 0;
    fclose(f);
    char salt_hex[2 * AUTH_SALT_LEN + 1], hash_hex[2 * AUTH_HASH_LEN + 1];
    if (!ok || sscanf(line, "blake2b:%32[0-9a-f]:%64[0-9a-f]", salt_hex, hash_hex) != 2 ||
        sodium_hex2bin(salt, AUTH_SALT_LEN, salt_hex, strlen(salt_hex), NULL, NULL, NULL) != 0 ||
        sodium_hex2bin(hash, AUTH_HASH_LEN, hash_hex, strlen(hash_hex), NULL, NULL, NULL) != 0)
        return err_set(e, 500, "StorageError", "%s is not a tributary admin key file", path);
    return 0;
}

static char *new_key(void) {
    unsigned char raw[AUTH_KEY_BYTES];
    randombytes_buf(raw, sizeof raw);
    char *key = xmalloc(3 + 2 * AUTH_KEY_BYTES + 1);
    memcpy(key, "tr_", 3);
    sodium_bin2hex(key + 3, 2 * AUTH_KEY_BYTES + 1, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    return key;
}

static int write_hash_file(const char *path, const char *key, tr_err *e) {
    unsigned char salt[AUTH_SALT_LEN], hash[AUTH_HASH_LEN];
    randombytes_buf(salt, sizeof salt);
    key_hash(salt, key, strlen(key), hash);
    char salt_hex[2 * AUTH_SALT_LEN + 1], hash_hex[2 * AUTH_HASH_LEN + 1];
    sodium_bin2hex(salt_hex, sizeof salt_hex, salt, sizeof salt);
    sodium_bin2hex(hash_hex, sizeof hash_hex, hash, sizeof hash);

    size_t n = strlen(path) + 8;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        err_set(e, 500, "StorageError", "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    char line[160];
    int len = snprintf(line, sizeof line, "blake2b:%s:%s\n", salt_hex, hash_hex);
    int ok = write(fd, line, (size_t)len) == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        err_set(e, 500, "StorageError", "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int auth_open(const char *data_dir, const char *key, char **generated, auth **out, tr_err *e) {
    *generated = NULL;
    auth *a = xcalloc(1, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    if (key && *key) {
        randombytes_buf(a->salt, sizeof a->salt);
        key_hash(a->salt, key, strlen(key), a->hash);
        *out = a;
        return 0;
    }
    a->path = key_path(data_dir);
    if (access(a->path, F_OK) != 0) {
        char *k = new_key();
        if (write_hash_file(a->path, k, e) != 0) {
            free(k);
            auth_close(a);
            return -1;
        }
        *generated = k;
    }
    if (read_hash_file(a->path, a->salt, a->hash, &a->seen, e) != 0) {
        free(*generated);
        *generated = NULL;
        auth_close(a);
        return -1;
    }
    *out = a;
    return 0;
}

void auth_close(auth *a) {
    if (!a) return;
    pthread_mutex_destroy(&a->mu);
    free(a->path);
    free(a);
}

/* Re-reads the hash file when it is not the one the current hash came from. */
static void refresh(auth *a) {
    struct stat st;
    if (stat(a->path, &st) != 0) return;
    if (st.st_ino == a->seen.st_ino && st.st_size == a->seen.st_size &&
        st.st_mtim.tv_sec == a->seen.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == a->seen.st_mtim.tv_nsec)
        return;
    unsigned char salt[AUTH_SALT_LEN], hash[AUTH_HASH_LEN];
    struct stat now;
    if (read_hash_file(a->path, salt, hash, &now, NULL) != 0) return;
    memcpy(a->salt, salt, sizeof salt);
    memcpy(a->hash, hash, sizeof hash);
    a->seen = now;
}

int auth_check(auth *a, const char *key, size_t len) {
    unsigned char salt[AUTH_SALT_LEN], want[AUTH_HASH_LEN], got[AUTH_HASH_LEN];
    pthread_mutex_lock(&a->mu);
    if (a->path) refresh(a);
    memcpy(salt, a->salt, sizeof salt);
    memcpy(want, a->hash, sizeof want);
    pthread_mutex_unlock(&a->mu);
    key_hash(salt, key, len, got);
    return sodium_memcmp(got, want, AUTH_HASH_LEN) == 0;
}

char *auth_rotate(const char *data_dir, tr_err *e) {
    char *path = key_path(data_dir);
    char *k = new_key();
    int rc = write_hash_file(path, k, e);
    free(path);
    if (rc != 0) {
        free(k);
        return NULL;
    }
    return k;
}
