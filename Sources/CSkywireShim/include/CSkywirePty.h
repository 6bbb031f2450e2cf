// The PTY app's system calls (docs/pty.md): pseudo-terminals, a session's fork/exec, and the
// wait-status macros Swift cannot import. Included by CSkywireShim.h; every name is `skw_`.
#ifndef C_SKYWIRE_PTY_H
#define C_SKYWIRE_PTY_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// posix_openpt(O_RDWR|O_NOCTTY|O_CLOEXEC), grantpt, unlockpt, ptsname_r, then opens the slave
/// (O_RDWR|O_NOCTTY|O_CLOEXEC) into `*slave` and sets the window size (TIOCSWINSZ; 0 rows or
/// columns: left as is). Returns the master, or -1 with errno set (nothing left open).
int skw_pty_open(unsigned short rows, unsigned short cols, int *slave);

/// TIOCSWINSZ / TIOCGWINSZ on a terminal descriptor.
int skw_pty_set_window(int fd, unsigned short rows, unsigned short cols);
int skw_pty_get_window(int fd, unsigned short *rows, unsigned short *cols);

/// Who a session's command runs as: with `set_ids` non-zero the child calls setgroups(groups),
/// setgid(gid) and setuid(uid) before exec (as root); with 0 it keeps the visor's ids.
struct skw_spawn_ids {
    int set_ids;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t group_count;
};

/// fork(2) + execve(2) of one session's command. In the child, only async-signal-safe calls:
/// signal mask emptied and dispositions reset to default, setsid(2), with `controlling_tty`
/// non-zero TIOCSCTTY on `stdin_fd` (a pty slave), dup2 of the three descriptors onto 0, 1, 2,
/// the ids of `ids`, chdir(`dir`) (else "/"), every other descriptor close-on-exec, execve.
/// Returns the child's pid once the exec succeeded; -1 with errno set when fork or the exec
/// failed (the child's errno is passed back through a close-on-exec pipe; the child is reaped).
pid_t skw_spawn_session(const char *path, char *const argv[], char *const envp[], const char *dir,
                        const struct skw_spawn_ids *ids, int stdin_fd, int stdout_fd, int stderr_fd,
                        int controlling_tty);

/// pidfd_open(2): a descriptor that polls readable when `pid` exits. -1 with errno set.
int skw_pidfd_open(pid_t pid);

/// Decodes a waitpid(2) status: returns the exit status (WEXITSTATUS), or the signal number
/// (WTERMSIG) with `*signalled` set to 1; -1 for a status that is neither (stopped/continued).
int skw_wait_status(int status, int *signalled);

/// setfsgid(2) then setfsuid(2): the calling thread's filesystem ids (Linux: per thread).
/// Returns 0 when both took effect, -1 otherwise.
int skw_set_thread_fs_ids(uid_t uid, gid_t gid);

/// mkostemp(3) with O_CLOEXEC: `template` ends in XXXXXX, replaced in place.
int skw_mkstemp_cloexec(char *template_path);

/// Catches `signals` (at most skw_signal_pipe_max) with a handler that writes each signal's
/// number as one byte to a non-blocking pipe, whatever thread the kernel picks; returns the
/// pipe's read end (close-on-exec). One set at a time per process. -1 with errno set.
int skw_signal_pipe_open(const int *signals, int count);
/// Puts the previous dispositions back and closes both ends.
void skw_signal_pipe_close(int read_fd);
/// The next caught signal from the pipe, 0 when none is pending.
int skw_signal_pipe_next(int read_fd);
enum { skw_signal_pipe_max = 8 };

#ifdef __cplusplus
}
#endif
#endif
