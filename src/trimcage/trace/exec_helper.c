/*
 * trimcage-exec: the last step of the embedded runtime before the entrypoint,
 * in runc's order: switch user, change directory, no_new_privs, install the
 * seccomp filter, exec. Built static by trimcage (gcc -static) and bound
 * read-only into the sandbox; it never reads anything from the image.
 *
 *   trimcage-exec [--uid U --gid G [--groups G1,G2,...]] [--chdir DIR]
 *                 [--seccomp-fd FD] -- PROGRAM ARGS...
 *
 * --seccomp-fd names an inherited descriptor holding a BPF program as
 * libseccomp's seccomp_export_bpf writes it (struct sock_filter array).
 * Exit codes: 126 setup failed (message on stderr), 127 exec failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_FILTER (1 << 16)
#define MAX_GROUPS 256

static void die(const char *what, const char *arg) {
    fprintf(stderr, "trimcage-exec: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
    exit(126);
}

static long number(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        errno = EINVAL;
        die(what, s);
    }
    return v;
}

int main(int argc, char **argv) {
    long uid = -1, gid = -1, fd = -1;
    const char *dir = NULL, *groups = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (i + 1 >= argc) { errno = EINVAL; die("missing value for", argv[i]); }
        if (!strcmp(argv[i], "--uid")) uid = number(argv[++i], "--uid");
        else if (!strcmp(argv[i], "--gid")) gid = number(argv[++i], "--gid");
        else if (!strcmp(argv[i], "--groups")) groups = argv[++i];
        else if (!strcmp(argv[i], "--chdir")) dir = argv[++i];
        else if (!strcmp(argv[i], "--seccomp-fd")) fd = number(argv[++i], "--seccomp-fd");
        else { errno = EINVAL; die("unknown option", argv[i]); }
    }
    if (i >= argc) { errno = EINVAL; die("no program to run", NULL); }

    static unsigned char filter[MAX_FILTER];
    size_t len = 0;
    if (fd >= 0) {
        ssize_t n;
        while ((n = read((int)fd, filter + len, sizeof filter - len)) > 0) len += (size_t)n;
        if (n < 0) die("reading the seccomp program", NULL);
        close((int)fd);
        if (len == 0 || len % sizeof(struct sock_filter) || len == sizeof filter) {
            errno = EINVAL;
            die("bad seccomp program", NULL);
        }
    }
    if (gid >= 0) {
        gid_t list[MAX_GROUPS];
        size_t n = 0;
        if (groups && *groups) {
            char *copy = strdup(groups), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && n < MAX_GROUPS; t = strtok_r(NULL, ",", &save))
                list[n++] = (gid_t)number(t, "--groups");
        }
        if (setgroups(n, list) < 0) die("setgroups", NULL);
        if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) die("setresgid", NULL);
    }
    if (uid >= 0 && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die("setresuid", NULL);
    if (dir && chdir(dir) < 0) die("chdir", dir);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs", NULL);
    if (len) {
        struct sock_fprog prog = {.len = (unsigned short)(len / sizeof(struct sock_filter)),
                                  .filter = (struct sock_filter *)filter};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) die("installing seccomp", NULL);
    }
    execvp(argv[i], argv + i);
    fprintf(stderr, "trimcage-exec: exec %s: %s\n", argv[i], strerror(errno));
    return 127;
}
