/* trimcage attack prober: try each attack named on argv, print one JSON line each.
 *
 * Built on the host with `gcc -static -O2` and run inside the locked-down
 * container (or a bwrap sandbox). Every attempt runs in a forked child so a
 * seccomp kill or a crash ends only that attempt. Output per attack:
 *   {"attack":"NAME","blocked":true|false,"errno":"EPERM"|...|"","detail":"..."}
 * Exit status 0 when every name was known, 2 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_userfaultfd
#define SYS_userfaultfd 323
#endif
#ifndef AF_PACKET
#define AF_PACKET 17
#endif

/* The child writes its verdict into this pipe: "B|errno|detail" or "A|errno|detail". */
static int out_fd = -1;

static void verdict(int blocked, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verdict(int blocked, int err, const char *fmt, ...) {
    char buf[512], detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    int n = snprintf(buf, sizeof buf, "%c|%d|%s", blocked ? 'B' : 'A', err, detail);
    if (write(out_fd, buf, (size_t)n) < 0) _exit(3);
    _exit(0);
}

/* --- exec attacks: blocked when execve fails ------------------------------ */
static void try_exec(const char *path, char *const argv[]) {
    char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
    /* The verdict pipe is close-on-exec: a successful execve closes it with
     * no verdict written, which main reports as "not blocked". */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2); }
    else { close(0); close(1); close(2); }
    alarm(20);
    execve(path, argv, envp);
    verdict(1, errno, "execve %s failed", path);
}

static void exec_attack(const char *name) {
    if (!strcmp(name, "exec_sh")) { char *a[] = {"sh", "-c", "exit 0", NULL}; try_exec("/bin/sh", a); }
    if (!strcmp(name, "exec_bash")) { char *a[] = {"bash", "-c", "exit 0", NULL}; try_exec("/bin/bash", a); }
    if (!strcmp(name, "exec_busybox")) { char *a[] = {"busybox", "true", NULL}; try_exec("/bin/busybox", a); }
    if (!strcmp(name, "exec_apt")) { char *a[] = {"apt", "--version", NULL}; try_exec("/usr/bin/apt", a); }
    if (!strcmp(name, "exec_dpkg")) { char *a[] = {"dpkg", "--version", NULL}; try_exec("/usr/bin/dpkg", a); }
    if (!strcmp(name, "exec_pip3")) { char *a[] = {"pip3", "--version", NULL}; try_exec("/usr/bin/pip3", a); }
    if (!strcmp(name, "exec_curl")) { char *a[] = {"curl", "--version", NULL}; try_exec("/usr/bin/curl", a); }
    if (!strcmp(name, "exec_wget")) { char *a[] = {"wget", "--version", NULL}; try_exec("/usr/bin/wget", a); }
    if (!strcmp(name, "exec_nc")) { char *a[] = {"nc", "-h", NULL}; try_exec("/usr/bin/nc", a); }
    if (!strcmp(name, "exec_python3")) { char *a[] = {"python3", "-c", "pass", NULL}; try_exec("/usr/bin/python3", a); }
    if (!strcmp(name, "exec_perl")) { char *a[] = {"perl", "-e", "1", NULL}; try_exec("/usr/bin/perl", a); }
}

/* --- kernel-surface attacks: blocked when the syscall fails --------------- */
static void by_result(long r, const char *what) {
    if (r < 0) verdict(1, errno, "%s failed", what);
    verdict(0, 0, "%s succeeded", what);
}

static void attack_ptrace(void) {
    /* TRACEME in a process that exits at once, so nothing here is left traced. */
    pid_t me = fork();
    if (me == 0) _exit(ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 ? (errno & 0xff) : 0);
    int st = 0;
    if (me < 0 || waitpid(me, &st, 0) < 0) st = 0;
    int e1 = me < 0 ? errno : (WIFEXITED(st) ? WEXITSTATUS(st) : 0);
    long r = e1 ? -1 : 0;
    /* Attach to a process of our own, never to pid 1: under an engine without an
     * init, pid 1 is the prober itself and a stray SIGSTOP would freeze it. */
    int hold[2];
    if (pipe(hold) < 0) verdict(1, errno, "pipe failed");
    pid_t victim = fork();
    if (victim == 0) {  /* waits until the pipe closes: needs no syscall a profile may deny */
        char c;
        close(hold[1]);
        while (read(hold[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(hold[0]);
    long r2 = victim > 0 ? ptrace(PTRACE_ATTACH, victim, NULL, NULL) : -1;
    int e2 = r2 < 0 ? errno : 0;
    if (r2 == 0) {  /* attached: collect the attach stop, then let go */
        waitpid(victim, NULL, 0);
        ptrace(PTRACE_DETACH, victim, NULL, NULL);
    }
    close(hold[1]);
    if (victim > 0) waitpid(victim, NULL, 0);
    if (r < 0 && r2 < 0) verdict(1, e1, "PTRACE_TRACEME failed (errno %d), PTRACE_ATTACH failed (errno %d)", e1, e2);
    verdict(0, r < 0 ? e2 : 0, "PTRACE_TRACEME %s, PTRACE_ATTACH %s", r < 0 ? "failed" : "succeeded",
            r2 < 0 ? "failed" : "succeeded");
}

static void attack_bpf(void) {
    struct bpf_insn insns[2];
    memset(insns, 0, sizeof insns);
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K; /* r0 = 0 */
    insns[0].dst_reg = 0;
    insns[1].code = BPF_JMP | BPF_EXIT;
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insn_cnt = 2;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.license = (uint64_t)(uintptr_t)"GPL";
    by_result(syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr), "bpf(BPF_PROG_LOAD)");
}

static void attack_setuid_chmod(void) {
    char path[] = "/tmp/trimcage-suid-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) verdict(1, errno, "cannot create a file in /tmp");
    close(fd);
    long r = chmod(path, 04755);
    int e = errno;
    struct stat st;
    int bit = stat(path, &st) == 0 && (st.st_mode & S_ISUID);
    unlink(path);
    if (r < 0) verdict(1, e, "chmod 04755 denied; setuid bit %s", bit ? "set" : "not set");
    verdict(0, 0, "chmod 04755 allowed; setuid bit %s", bit ? "set" : "not set");
}

static void attack_write_root(void) {
    int fd = open("/trimcage-probe-write", O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) verdict(1, errno, "creating /trimcage-probe-write failed");
    close(fd);
    unlink("/trimcage-probe-write");
    verdict(0, 0, "created /trimcage-probe-write");
}

static void attack_int80(void) {
    long pid = getpid();
    long ret;
    /* i386 getpid is 20; the 32-bit entry point truncates registers. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "rcx", "r11", "r8", "r9", "r10");
    if (ret == pid) verdict(0, 0, "int 0x80 getpid returned the pid %ld", ret);
    verdict(1, ret < 0 && ret > -4096 ? (int)-ret : 0, "int 0x80 getpid returned %ld (pid %ld)", ret, pid);
}

static void run_attack(const char *name) {
    if (!strncmp(name, "exec_", 5)) exec_attack(name);
    else if (!strcmp(name, "raw_socket")) by_result(socket(AF_INET, SOCK_RAW, 1), "socket(AF_INET, SOCK_RAW)");
    else if (!strcmp(name, "packet_socket")) by_result(socket(AF_PACKET, SOCK_RAW, 0), "socket(AF_PACKET)");
    else if (!strcmp(name, "unshare_user")) by_result(unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)");
    else if (!strcmp(name, "unshare_mount")) by_result(unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
    else if (!strcmp(name, "setns")) {
        int fd = open("/proc/self/ns/mnt", O_RDONLY);
        long r = syscall(SYS_setns, fd, 0);
        int e = errno;
        if (r < 0) verdict(1, e, "setns(/proc/self/ns/mnt)%s failed", fd < 0 ? " (no fd)" : "");
        verdict(0, 0, "setns(/proc/self/ns/mnt) succeeded");
    }
    else if (!strcmp(name, "mount_tmpfs")) {
        char dir[] = "/tmp/trimcage-mnt-XXXXXX";
        const char *target = mkdtemp(dir) ? dir : "/mnt";
        long r = mount("none", target, "tmpfs", 0, "size=1m");
        int e = errno;
        if (r == 0) umount2(target, MNT_DETACH);
        rmdir(dir);
        if (r < 0) verdict(1, e, "mount tmpfs on %s failed", target);
        verdict(0, 0, "mount tmpfs on %s succeeded", target);
    }
    else if (!strcmp(name, "ptrace")) attack_ptrace();
    else if (!strcmp(name, "bpf")) attack_bpf();
    else if (!strcmp(name, "keyctl"))
        by_result(syscall(SYS_add_key, "user", "trimcage", "x", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */),
                  "add_key");
    else if (!strcmp(name, "userfaultfd")) by_result(syscall(SYS_userfaultfd, O_CLOEXEC), "userfaultfd");
    else if (!strcmp(name, "io_uring")) {
        char params[120];
        memset(params, 0, sizeof params);
        by_result(syscall(SYS_io_uring_setup, 4, params), "io_uring_setup");
    }
    else if (!strcmp(name, "personality")) {
        long r = personality(READ_IMPLIES_EXEC);
        int e = errno;
        if (r < 0) verdict(1, e, "personality(READ_IMPLIES_EXEC) failed");
        long now = personality(0xffffffff);
        if (now >= 0 && (now & READ_IMPLIES_EXEC)) verdict(0, 0, "READ_IMPLIES_EXEC set");
        verdict(1, 0, "personality returned but READ_IMPLIES_EXEC is not set");
    }
    else if (!strcmp(name, "setuid_chmod")) attack_setuid_chmod();
    else if (!strcmp(name, "write_root")) attack_write_root();
    else if (!strcmp(name, "x86_32_abi")) attack_int80();
    _exit(4); /* unknown name */
}

static const char *errname(int e) {
    switch (e) {
    case 0: return "";
    case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case EACCES: return "EACCES";
    case EROFS: return "EROFS"; case ENOSYS: return "ENOSYS"; case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT"; case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ENOEXEC: return "ENOEXEC"; case EBADF: return "EBADF"; case ENOMEM: return "ENOMEM";
    case EFAULT: return "EFAULT"; case ESRCH: return "ESRCH"; case ENOTDIR: return "ENOTDIR";
    case EEXIST: return "EEXIST"; case EBUSY: return "EBUSY"; case EDQUOT: return "EDQUOT";
    case ENOSPC: return "ENOSPC"; case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    default: return "EOTHER";
    }
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    int status_all = 0;
    for (int i = 1; i < argc; i++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) return 1;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            close(fds[0]);
            out_fd = fds[1];
            run_attack(argv[i]);
        }
        close(fds[1]);
        char buf[600];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof buf - 1 && (n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
        buf[len] = 0;
        close(fds[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        int blocked, err = 0;
        char detail[600];
        if (WIFEXITED(st) && WEXITSTATUS(st) == 4) {
            status_all = 2;
            printf("{\"attack\":");
            json_str(argv[i]);
            printf(",\"blocked\":false,\"errno\":\"\",\"detail\":\"unknown attack\",\"unknown\":true}\n");
            continue;
        }
        if (len == 0 && !strncmp(argv[i], "exec_", 5) && (WIFEXITED(st) || WIFSIGNALED(st))) {
            blocked = 0; /* the verdict pipe closed on a successful execve */
            if (WIFEXITED(st)) snprintf(detail, sizeof detail, "execve succeeded, program exited %d", WEXITSTATUS(st));
            else snprintf(detail, sizeof detail, "execve succeeded, program killed by signal %d", WTERMSIG(st));
        } else if (len >= 3 && buf[1] == '|') {
            blocked = buf[0] == 'B';
            char *p = buf + 2;
            err = (int)strtol(p, &p, 10);
            snprintf(detail, sizeof detail, "%s", *p == '|' ? p + 1 : p);
        } else if (WIFSIGNALED(st)) {
            blocked = 1; /* killed by seccomp (SIGSYS) or a fault: the attack did not complete */
            snprintf(detail, sizeof detail, "attempt killed by signal %d", WTERMSIG(st));
        } else {
            blocked = 1;
            snprintf(detail, sizeof detail, "attempt ended without a verdict (status %d)", st);
        }
        printf("{\"attack\":");
        json_str(argv[i]);
        printf(",\"blocked\":%s,\"errno\":", blocked ? "true" : "false");
        json_str(errname(err));
        printf(",\"detail\":");
        json_str(detail);
        printf("}\n");
    }
    fflush(stdout);
    return status_all;
}
