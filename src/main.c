/*
 * main.c — the command line: `tributary serve`, `tributary admin-key`, `tributary export`.
 *
 * Only argument handling and the order of start-up and shut-down live here; every piece
 * of work is in a module. Flags are long options (getopt_long); an unknown flag gets one
 * line naming it and exit code 2, so scripts fail loudly. Signals are blocked in every
 * thread and taken by the main thread with sigwait, so shutdown runs as ordinary code.
 */
#include "api/api.h"
#include "api/stats.h"
#include "http/auth.h"
#include "http/server.h"
#include "model/names.h"
#include "store/store.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_LISTEN "127.0.0.1:3210"
#define DEFAULT_DATA_DIR "./data"
#define DEFAULT_MAX_BODY (64ull * 1024 * 1024)
#define DEFAULT_THREADS 256
#define DEFAULT_SNAPSHOT_CACHE_ROWS ((size_t)2 << 20) /* 48 MiB (docs/export.md) */
#define SHUTDOWN_GRACE_MS 60000

static const char *prog = "tributary";

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "%s %s: ", prog, cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see '%s %s --help')\n", prog, cmd);
    return 2;
}

static int fail(const char *cmd, const tr_err *e) {
    fprintf(stderr, "%s %s: %s\n", prog, cmd, e->message);
    return 1;
}

/* Bytes with an optional K/M/G suffix (powers of 1024). */
static int parse_size(const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return -1;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024ull, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024ull * 1024, end++;
    else if (*end == 'G' || *end == 'g') mul = 1024ull * 1024 * 1024, end++;
    if (*end == 'i' && end[1] == 'B') end += 2;
    else if (*end == 'B') end++;
    if (*end || v == 0 || v > ULLONG_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}

/* A duration: number with s, m, h or d (default seconds). */
static int parse_duration_ns(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v <= 0) return -1;
    long long mul = 1;
    switch (*end) {
    case '\0': case 's': mul = 1; break;
    case 'm': mul = 60; break;
    case 'h': mul = 3600; break;
    case 'd': mul = 86400; break;
    default: return -1;
    }
    if (*end && end[1]) return -1;
    if (v > LLONG_MAX / mul / 1000000000LL) return -1;
    *out = v * mul * 1000000000LL;
    return 0;
}

/* mkdir -p, then checks that we can write there. */
static int prepare_data_dir(const char *dir, tr_err *e) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return err_set(e, 500, "BadConfig", "data dir path too long");
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return err_set(e, 500, "BadConfig", "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return err_set(e, 500, "BadConfig", "cannot create data dir %s: %s", path, strerror(errno));
    if (access(path, W_OK | X_OK) != 0)
        return err_set(e, 500, "BadConfig", "data dir %s is not writable: %s", path, strerror(errno));
    return 0;
}

static void print_serve_help(void) {
    printf("Usage: %s serve [options]\n"
           "Serve Convex's Streaming Import API on SQLite or PostgreSQL.\n\n"
           "  --listen ADDR:PORT      address to listen on (default %s)\n"
           "  --data-dir DIR          where the SQLite database and the key hash live\n"
           "                          (default %s)\n"
           "  --database-url URL      store the data in PostgreSQL instead (or env DATABASE_URL\n"
           "                          or POSTGRES_URL); any libpq connection string or URI\n"
           "  --admin-key KEY         the admin key (or env TRIBUTARY_ADMIN_KEY); otherwise one\n"
           "                          is generated on first start and printed once\n"
           "  --max-body-size BYTES   import request limit, K/M/G suffixes (default 64M)\n"
           "  --threads N             connections served at once, one thread each (default %d)\n"
           "  --retention DURATION    keep replaced/deleted versions this long, e.g. 5d, 12h\n"
           "                          (default 5d)\n"
           "  --public-metrics        serve GET /metrics without credentials (or env\n"
           "                          TRIBUTARY_PUBLIC_METRICS=1)\n"
           "  --snapshot-cache-rows N old versions list_snapshot walks keep found, per\n"
           "                          process, 24 bytes each (default %zu; 0: none)\n"
           "  --help, --version\n",
           prog, DEFAULT_LISTEN, DEFAULT_DATA_DIR, DEFAULT_THREADS, DEFAULT_SNAPSHOT_CACHE_ROWS);
}

static int wait_for_signal(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

static int cmd_serve(int argc, char **argv) {
    const char *listen_addr = DEFAULT_LISTEN, *data_dir = DEFAULT_DATA_DIR;
    const char *key = getenv("TRIBUTARY_ADMIN_KEY");
    const char *db_url = getenv("DATABASE_URL") ? getenv("DATABASE_URL") : getenv("POSTGRES_URL");
    unsigned long long max_body = DEFAULT_MAX_BODY;
    long threads = DEFAULT_THREADS;
    long long retention_ns = 0;
    unsigned long long snapshot_cache_rows = DEFAULT_SNAPSHOT_CACHE_ROWS;
    const char *pm = getenv("TRIBUTARY_PUBLIC_METRICS");
    int public_metrics = pm && strcmp(pm, "1") == 0;
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'},     {"data-dir", required_argument, 0, 'd'},
        {"admin-key", required_argument, 0, 'k'},  {"max-body-size", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 't'},    {"retention", required_argument, 0, 'r'},
        {"database-url", required_argument, 0, 'u'}, {"public-metrics", no_argument, 0, 'p'},
        {"snapshot-cache-rows", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},          {0, 0, 0, 0},
    };
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen_addr = optarg; break;
        case 's':
            errno = 0;
            snapshot_cache_rows = strtoull(optarg, &end, 10);
            if (*end || !*optarg || *optarg == '-' || errno || snapshot_cache_rows > (1ULL << 32))
                return usage_error("serve", "bad --snapshot-cache-rows '%s'", optarg);
            break;
        case 'd': data_dir = optarg; break;
        case 'k': key = optarg; break;
        case 'u': db_url = optarg; break;
        case 'p': public_metrics = 1; break;
        case 'm':
            if (parse_size(optarg, &max_body) != 0)
                return usage_error("serve", "bad --max-body-size '%s'", optarg);
            break;
        case 't':
            threads = strtol(optarg, &end, 10);
            if (*end || threads < 1 || threads > 65535)
                return usage_error("serve", "bad --threads '%s'", optarg);
            break;
        case 'r':
            if (parse_duration_ns(optarg, &retention_ns) != 0)
                return usage_error("serve", "bad --retention '%s'", optarg);
            break;
        case 'h': print_serve_help(); return 0;
        case 'V': printf("tributary %s\n", TRIBUTARY_VERSION); return 0;
        case ':': return usage_error("serve", "option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("serve", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (db_url && !*db_url) db_url = NULL;

    /* Block the shutdown signals before any thread starts, so only sigwait sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tr_err e;
    err_clear(&e);
    if (prepare_data_dir(data_dir, &e) != 0) return fail("serve", &e);
    auth *a = NULL;
    char *generated = NULL;
    if (auth_open(data_dir, key, &generated, &a, &e) != 0) return fail("serve", &e);
    store_config sc = {.database_url = db_url, .data_dir = data_dir, .readonly = 0,
                       .retention_ns = retention_ns,
                       .snapshot_cache_rows = (size_t)snapshot_cache_rows};
    store *st = NULL;
    if (store_open(&sc, &st, &e) != 0) {
        free(generated);
        auth_close(a);
        return fail("serve", &e);
    }
    buf storage = BUF_INIT;
    if (db_url) buf_puts(&storage, "PostgreSQL");
    else buf_printf(&storage, "SQLite in %s", data_dir);
    size_t nendpoints = 0;
    while (api_endpoints[nendpoints]) nendpoints++;
    api_env env = {.st = st, .version = TRIBUTARY_VERSION, .storage = storage.p,
                   .stats = api_stats_new(nendpoints), .public_metrics = public_metrics};
    http_config hc = {.listen = listen_addr, .max_body = (size_t)max_body,
                      .max_conns = (unsigned)threads, .env = &env, .auth = a};
    http_server *srv = NULL;
    if (http_start(&hc, &srv, &e) != 0) {
        free(generated);
        api_stats_free(env.stats);
        buf_free(&storage);
        store_close(st);
        auth_close(a);
        return fail("serve", &e);
    }
    if (generated) {
        printf("Admin key: %s\n", generated);
        printf("(shown once; only its hash is kept in %s/admin_key)\n", data_dir);
        free(generated);
    }
    printf("tributary %s listening on http://%s (%s)\n", TRIBUTARY_VERSION, listen_addr,
           storage.p);
    fflush(stdout);

    int sig = wait_for_signal();
    fprintf(stderr, "tributary: %s received, finishing requests in flight\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_stop(srv, SHUTDOWN_GRACE_MS);
    api_stats_free(env.stats);
    buf_free(&storage);
    store_close(st);
    auth_close(a);
    return 0;
}

static int cmd_admin_key(int argc, char **argv) {
    const char *data_dir = DEFAULT_DATA_DIR;
    static const struct option opts[] = {
        {"data-dir", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data_dir = optarg; break;
        case 'h':
            printf("Usage: %s admin-key [--data-dir DIR]\n"
                   "Issue a new admin key for DIR (default %s) and print it; the old key stops\n"
                   "working at once, also on a running server.\n",
                   prog, DEFAULT_DATA_DIR);
            return 0;
        case 'V': printf("tributary %s\n", TRIBUTARY_VERSION); return 0;
        case ':': return usage_error("admin-key", "option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("admin-key", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("admin-key", "unexpected argument '%s'", argv[optind]);
    tr_err e;
    err_clear(&e);
    if (prepare_data_dir(data_dir, &e) != 0) return fail("admin-key", &e);
    char *k = auth_rotate(data_dir, &e);
    if (!k) return fail("admin-key", &e);
    printf("%s\n", k);
    free(k);
    return 0;
}

static int print_doc(void *ctx, const char *json, size_t len) {
    (void)ctx;
    fwrite(json, 1, len, stdout);
    return putchar('\n') == EOF;
}

static int cmd_export(int argc, char **argv) {
    const char *data_dir = DEFAULT_DATA_DIR, *table = NULL;
    const char *db_url = getenv("DATABASE_URL") ? getenv("DATABASE_URL") : getenv("POSTGRES_URL");
    static const struct option opts[] = {
        {"data-dir", required_argument, 0, 'd'}, {"table", required_argument, 0, 't'},
        {"database-url", required_argument, 0, 'u'},
        {"help", no_argument, 0, 'h'},           {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data_dir = optarg; break;
        case 't': table = optarg; break;
        case 'u': db_url = optarg; break;
        case 'h':
            printf("Usage: %s export --table T [--data-dir DIR | --database-url URL]\n"
                   "Print the current documents of table T as JSON lines (Convex JSON: int64 as\n"
                   "{\"$integer\": base64}). Safe while the server runs.\n",
                   prog);
            return 0;
        case 'V': printf("tributary %s\n", TRIBUTARY_VERSION); return 0;
        case ':': return usage_error("export", "option '%s' needs a value", argv[optind - 1]);
        default: return usage_error("export", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("export", "unexpected argument '%s'", argv[optind]);
    if (!table) return usage_error("export", "%s", "--table is required");
    tr_err e;
    err_clear(&e);
    char name[NAMES_TABLE_MAX + 1];
    if (names_table_rewrite(table, strlen(table), name, &e) != 0) return fail("export", &e);
    if (db_url && !*db_url) db_url = NULL;
    store_config sc = {.database_url = db_url, .data_dir = data_dir, .readonly = 1,
                       .retention_ns = 0};
    store *st = NULL;
    if (store_open(&sc, &st, &e) != 0) return fail("export", &e);
    int rc = store_export_table(st, name, print_doc, NULL, &e);
    store_close(st);
    if (fflush(stdout) != 0) return 1;
    return rc == 0 ? 0 : fail("export", &e);
}

static void print_help(void) {
    printf("Usage: %s COMMAND [options]\n"
           "A self-hosted target for Convex's Streaming Import API.\n\n"
           "Commands:\n"
           "  serve        run the server (default: http://%s, SQLite in %s)\n"
           "  admin-key    issue a new admin key\n"
           "  export       print a table's documents as JSON lines\n\n"
           "'%s COMMAND --help' tells more.\n",
           prog, DEFAULT_LISTEN, DEFAULT_DATA_DIR, prog);
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) {
        fprintf(stderr, "%s: cannot initialise libsodium\n", prog);
        return 1;
    }
    if (argc < 2) {
        print_help();
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        print_help();
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("tributary %s\n", TRIBUTARY_VERSION);
        return 0;
    }
    opterr = 0;
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "admin-key") == 0) return cmd_admin_key(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0) return cmd_export(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s' (see '%s --help')\n", prog, cmd, prog);
    return 2;
}
