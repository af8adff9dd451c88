/*
 * The SQLite floor of a heartbeat refresh: what the embedded engine alone costs to store one
 * refresh's result at N connections, with forcelink's settings and none of forcelink's code.
 * Built against the SQLite amalgamation that libsqlite3-sys bundles (the engine forcelink runs)
 * by bench/sqlite-floor.sh; results in BENCHMARKS.md ("The SQLite floor").
 *
 * A table shaped like `connections` (the same columns, indexes and row sizes as a bench
 * database: about 600 bytes a row, both sealed tokens inside) holds N rows. Each round stores
 * a refresh for every row, in random order (a round's claims come in due order, which is
 * random against the file's order), G refreshes per `BEGIN IMMEDIATE` transaction, with WAL,
 * synchronous=FULL, a 64 MiB cache and checkpoints every 16,384 pages, as forcelink's rotations
 * connection. One refresh is one prepared UPDATE of the row by (org_id, context): new sealed
 * tokens, generation, times, next heartbeat and refresh-token use (both indexed). That is the
 * least any design must write. With `lineage`, each refresh also appends one lineage row as
 * forcelink does (a table with a unique attempt id and an index by connection).
 *
 * It prints CPU (user + system, getrusage) and bytes written per refresh for each round.
 *
 *     sqlite-floor N G ROUNDS DIR [lineage]
 *
 * FLOOR_SQL (e.g. "PRAGMA cache_size = -262144;" or "DROP INDEX …;") runs after forcelink's
 * pragmas and the schema, to try other settings; FLOOR_PRE_SQL runs before them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sqlite3.h"

static sqlite3 *db;

static void check(int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite-floor: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void exec(const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) {
        fprintf(stderr, "sqlite-floor: %s: %s\n", sql, error);
        exit(1);
    }
}

static uint64_t state = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static void random_bytes(unsigned char *out, int n) {
    for (int i = 0; i < n; i++) out[i] = (unsigned char)next_random();
}

static void random_text(char *out, int n) {
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (int i = 0; i < n; i++) out[i] = alphabet[next_random() % 62];
    out[n] = 0;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
           usage.ru_stime.tv_usec / 1e6;
}

static double wall_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

/* Bytes this process has written so far (wchar of /proc/self/io). */
static long long written_bytes(void) {
    FILE *io = fopen("/proc/self/io", "r");
    char line[128];
    long long value = -1;
    while (io && fgets(line, sizeof line, io))
        if (sscanf(line, "wchar: %lld", &value) == 1) break;
    if (io) fclose(io);
    return value;
}

#define SEALED_ACCESS 152
#define SEALED_REFRESH 122

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: sqlite-floor N G ROUNDS DIR [lineage]\n");
        return 2;
    }
    int n = atoi(argv[1]), group = atoi(argv[2]), rounds = atoi(argv[3]);
    int lineage = argc > 5 && strcmp(argv[5], "lineage") == 0;
    if (n <= 0 || group <= 0 || rounds <= 0) {
        fprintf(stderr, "sqlite-floor: N, G and ROUNDS must be positive\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/floor-%d.db", argv[4], (int)getpid());
    check(sqlite3_open(path, &db), "open");
    /* FLOOR_PRE_SQL: statements run before anything else (say "PRAGMA page_size = 1024;",
     * which must precede the first table and the switch to WAL). */
    if (getenv("FLOOR_PRE_SQL")) exec(getenv("FLOOR_PRE_SQL"));
    exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA temp_store = memory;"
         "PRAGMA wal_autocheckpoint = 16384; PRAGMA cache_size = -65536;");
    /* The columns of `connections` after migration 0008, its unique keys and the two
     * heartbeat indexes of migration 0003. */
    exec("CREATE TABLE connections (id TEXT NOT NULL PRIMARY KEY, org_id TEXT NOT NULL,"
         " context TEXT NOT NULL, user_id TEXT NOT NULL, username TEXT NOT NULL,"
         " instance_url TEXT NOT NULL, login_host TEXT NOT NULL, identity_url TEXT NOT NULL,"
         " scopes TEXT NOT NULL, state TEXT NOT NULL, state_cause TEXT, pkce INTEGER NOT NULL,"
         " rotation_seen INTEGER NOT NULL, signature_verified INTEGER NOT NULL,"
         " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_refresh_at INTEGER,"
         " generation INTEGER NOT NULL, access_token BLOB NOT NULL,"
         " access_issued_at INTEGER NOT NULL, access_expires_at INTEGER NOT NULL,"
         " refresh_token BLOB, health TEXT NOT NULL DEFAULT 'ok', health_detail TEXT,"
         " refresh_token_used_at INTEGER NOT NULL, heartbeat_due_at INTEGER NOT NULL,"
         " at_risk_level INTEGER NOT NULL DEFAULT 0, UNIQUE (org_id, context)) STRICT;"
         "CREATE INDEX connections_by_heartbeat_due ON connections (state, heartbeat_due_at);"
         "CREATE INDEX connections_by_refresh_token_use"
         " ON connections (state, refresh_token_used_at);"
         "CREATE TABLE refresh_attempts (attempt_id TEXT NOT NULL PRIMARY KEY,"
         " org_id TEXT NOT NULL, context TEXT NOT NULL, instance TEXT NOT NULL,"
         " started_at INTEGER NOT NULL, finished_at INTEGER, old_refresh_hash TEXT NOT NULL,"
         " new_refresh_hash TEXT, latency_ms INTEGER, outcome TEXT NOT NULL, detail TEXT,"
         " egress TEXT, recovery INTEGER NOT NULL) STRICT;"
         "CREATE INDEX refresh_attempts_by_connection"
         " ON refresh_attempts (org_id, context, started_at, attempt_id);");
    /* FLOOR_SQL: statements run after forcelink's pragmas and the schema, to try others. */
    if (getenv("FLOOR_SQL")) exec(getenv("FLOOR_SQL"));

    const int64_t day = 86400000000ll, interval = day;
    int64_t now = 1790000000000000ll;
    char (*orgs)[19] = malloc((size_t)n * sizeof *orgs);
    unsigned char access[SEALED_ACCESS], refresh[SEALED_REFRESH];
    char text[80], id[37];
    sqlite3_stmt *insert;
    check(sqlite3_prepare_v2(db,
              "INSERT INTO connections VALUES (?1, ?2, 'api', ?3, ?4, ?5,"
              " 'login.salesforce.com', ?6, 'api refresh_token', 'active', NULL, 1, 1, 1, ?7, ?7,"
              " NULL, 1, ?8, ?7, ?7 + 7200000000, ?9, 'ok', NULL, ?7, ?10, 0)",
              -1, &insert, NULL),
          "prepare insert");
    exec("BEGIN");
    for (int i = 0; i < n; i++) {
        memcpy(orgs[i], "00D", 3);
        random_text(orgs[i] + 3, 15);
        random_text(id, 36);
        sqlite3_bind_text(insert, 1, id, 36, SQLITE_TRANSIENT);
        sqlite3_bind_text(insert, 2, orgs[i], 18, SQLITE_TRANSIENT);
        random_text(text, 18);
        sqlite3_bind_text(insert, 3, text, 18, SQLITE_TRANSIENT);
        random_text(text, 24);
        sqlite3_bind_text(insert, 4, text, 24, SQLITE_TRANSIENT);
        random_text(text, 22);
        sqlite3_bind_text(insert, 5, text, 22, SQLITE_TRANSIENT);
        random_text(text, 63);
        sqlite3_bind_text(insert, 6, text, 63, SQLITE_TRANSIENT);
        sqlite3_bind_int64(insert, 7, now);
        random_bytes(access, SEALED_ACCESS);
        sqlite3_bind_blob(insert, 8, access, SEALED_ACCESS, SQLITE_TRANSIENT);
        random_bytes(refresh, SEALED_REFRESH);
        sqlite3_bind_blob(insert, 9, refresh, SEALED_REFRESH, SQLITE_TRANSIENT);
        sqlite3_bind_int64(insert, 10, now + interval - (int64_t)(next_random() % (interval / 10)));
        check(sqlite3_step(insert), "insert");
        sqlite3_reset(insert);
    }
    exec("COMMIT");
    sqlite3_finalize(insert);

    sqlite3_stmt *update, *record;
    check(sqlite3_prepare_v2(db,
              "UPDATE connections SET access_token = ?3, refresh_token = ?4,"
              " generation = generation + 1, access_issued_at = ?5,"
              " access_expires_at = ?5 + 7200000000, last_refresh_at = ?5, updated_at = ?5,"
              " refresh_token_used_at = ?5, heartbeat_due_at = ?6"
              " WHERE org_id = ?1 AND context = ?2",
              -1, &update, NULL),
          "prepare update");
    check(sqlite3_prepare_v2(db,
              "INSERT INTO refresh_attempts VALUES (?1, ?2, 'api', 'bench-instance-0001', ?3,"
              " ?3 + 40000, ?4, ?5, 40, 'rotated', NULL, NULL, 0)",
              -1, &record, NULL),
          "prepare record");
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = i;
    printf("# sqlite-floor N=%d G=%d lineage=%s SQLite %s\n", n, group, lineage ? "yes" : "no",
           sqlite3_libversion());
    printf("round  cpu_us_per_refresh  written_kib_per_refresh  wall_s\n");
    for (int round = 1; round <= rounds; round++) {
        now += interval + 60000000ll;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(next_random() % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double cpu0 = cpu_seconds(), wall0 = wall_seconds();
        long long written0 = written_bytes();
        for (int start = 0; start < n; start += group) {
            exec("BEGIN IMMEDIATE");
            for (int k = start; k < start + group && k < n; k++) {
                int64_t at = now + k;
                random_bytes(access, SEALED_ACCESS);
                random_bytes(refresh, SEALED_REFRESH);
                sqlite3_bind_text(update, 1, orgs[order[k]], 18, SQLITE_STATIC);
                sqlite3_bind_text(update, 2, "api", 3, SQLITE_STATIC);
                sqlite3_bind_blob(update, 3, access, SEALED_ACCESS, SQLITE_TRANSIENT);
                sqlite3_bind_blob(update, 4, refresh, SEALED_REFRESH, SQLITE_TRANSIENT);
                sqlite3_bind_int64(update, 5, at);
                sqlite3_bind_int64(update, 6,
                                   at + interval - (int64_t)(next_random() % (interval / 10)));
                check(sqlite3_step(update), "update");
                sqlite3_reset(update);
                if (lineage) {
                    char attempt[37], hash_old[65], hash_new[65];
                    /* Time-ordered attempt ids, as UUIDv7: they append to their index. */
                    snprintf(attempt, sizeof attempt, "%016llx-%019d", (long long)at, k);
                    random_text(hash_old, 64);
                    random_text(hash_new, 64);
                    sqlite3_bind_text(record, 1, attempt, 36, SQLITE_TRANSIENT);
                    sqlite3_bind_text(record, 2, orgs[order[k]], 18, SQLITE_STATIC);
                    sqlite3_bind_int64(record, 3, at);
                    sqlite3_bind_text(record, 4, hash_old, 64, SQLITE_TRANSIENT);
                    sqlite3_bind_text(record, 5, hash_new, 64, SQLITE_TRANSIENT);
                    check(sqlite3_step(record), "record");
                    sqlite3_reset(record);
                }
            }
            exec("COMMIT");
        }
        double cpu = cpu_seconds() - cpu0, wall = wall_seconds() - wall0;
        long long written = written_bytes() - written0;
        printf("%5d  %18.1f  %23.1f  %6.2f\n", round, cpu * 1e6 / n, written / 1024.0 / n, wall);
        fflush(stdout);
    }
    sqlite3_finalize(update);
    sqlite3_finalize(record);
    sqlite3_close(db);
    unlink(path);
    char side[4200];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    free(order);
    free(orgs);
    return 0;
}
