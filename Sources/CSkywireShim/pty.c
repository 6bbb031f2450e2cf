#define _GNU_SOURCE
#include "CSkywirePty.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/fsuid.h>
#include <sys/wait.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

enum { skw_pty_name_max = 128 };

int skw_pty_open(unsigned short rows, unsigned short cols, int *slave) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    char name[skw_pty_name_max];
    int s = -1;
    if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, name, sizeof(name)) != 0) goto fail;
    s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) goto fail;
    if (rows != 0 && cols != 0 && skw_pty_set_window(master, rows, cols) != 0) goto fail;
    *slave = s;
    return master;
fail:;
    int saved = errno;
    if (s >= 0) close(s);
    close(master);
    errno = saved;
    return -1;
}

int skw_pty_set_window(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof(ws));
    ws.ws_row = rows;
    ws.ws_col = cols;
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int skw_pty_get_window(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return -1;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}

/// dup2 that also works when `fd` already is `target` (clears close-on-exec instead).
static int skw_child_dup(int fd, int target) {
    if (fd == target) return fcntl(fd, F_SETFD, 0);
    return dup2(fd, target) < 0 ? -1 : 0;
}

/// The child's side of skw_spawn_session: async-signal-safe calls only; never returns.
static void skw_child(const char *path, char *const argv[], char *const envp[], const char *dir,
                      const struct skw_spawn_ids *ids, int in, int out, int err, int controlling_tty, int report) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL);  // fails harmlessly for KILL/STOP
    if (setsid() < 0) goto fail;
    if (controlling_tty && ioctl(in, TIOCSCTTY, 0) != 0) goto fail;
    if (skw_child_dup(in, STDIN_FILENO) != 0 || skw_child_dup(out, STDOUT_FILENO) != 0 ||
        skw_child_dup(err, STDERR_FILENO) != 0) goto fail;
    if (ids != NULL && ids->set_ids) {
        if (setgroups(ids->group_count, ids->groups) != 0 || setgid(ids->gid) != 0 || setuid(ids->uid) != 0) goto fail;
    }
    if (dir == NULL || chdir(dir) != 0) (void)chdir("/");
    // Descriptors the visor opened without close-on-exec must not reach the command.
    (void)syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(path, argv, envp);
fail:;
    int e = errno;
    ssize_t ignored = write(report, &e, sizeof(e));
    (void)ignored;
    _exit(127);
}

pid_t skw_spawn_session(const char *path, char *const argv[], char *const envp[], const char *dir,
                        const struct skw_spawn_ids *ids, int stdin_fd, int stdout_fd, int stderr_fd,
                        int controlling_tty) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(report[0]);
        close(report[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) skw_child(path, argv, envp, dir, ids, stdin_fd, stdout_fd, stderr_fd, controlling_tty, report[1]);
    close(report[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof(child_errno)) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        errno = child_errno;
        return -1;
    }
    return pid;
}

int skw_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int skw_wait_status(int status, int *signalled) {
    *signalled = 0;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) {
        *signalled = 1;
        return WTERMSIG(status);
    }
    return -1;
}

int skw_set_thread_fs_ids(uid_t uid, gid_t gid) {
    // Each call returns the previous id; a second call returning the new one confirms it.
    setfsgid(gid);
    setfsuid(uid);
    return (gid_t)setfsgid(gid) == gid && (uid_t)setfsuid(uid) == uid ? 0 : -1;
}

int skw_mkstemp_cloexec(char *template_path) {
    return mkostemp(template_path, O_CLOEXEC);
}

static int skw_signal_pipe_write = -1;
static int skw_signal_pipe_count = 0;
static int skw_signal_pipe_signals[skw_signal_pipe_max];
static struct sigaction skw_signal_pipe_previous[skw_signal_pipe_max];

static void skw_signal_pipe_handler(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t ignored = write(skw_signal_pipe_write, &b, 1);
    (void)ignored;
    errno = saved;
}

int skw_signal_pipe_open(const int *signals, int count) {
    if (count > skw_signal_pipe_max || skw_signal_pipe_write >= 0) {
        errno = EINVAL;
        return -1;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    skw_signal_pipe_write = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = skw_signal_pipe_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    skw_signal_pipe_count = 0;
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], &sa, &skw_signal_pipe_previous[i]) != 0) {
            int saved = errno;
            skw_signal_pipe_close(fds[0]);
            errno = saved;
            return -1;
        }
        skw_signal_pipe_signals[i] = signals[i];
        skw_signal_pipe_count = i + 1;
    }
    return fds[0];
}

void skw_signal_pipe_close(int read_fd) {
    for (int i = 0; i < skw_signal_pipe_count; i++)
        sigaction(skw_signal_pipe_signals[i], &skw_signal_pipe_previous[i], NULL);
    skw_signal_pipe_count = 0;
    if (skw_signal_pipe_write >= 0) close(skw_signal_pipe_write);
    skw_signal_pipe_write = -1;
    close(read_fd);
}

int skw_signal_pipe_next(int read_fd) {
    unsigned char b;
    return read(read_fd, &b, 1) == 1 ? (int)b : 0;
}
