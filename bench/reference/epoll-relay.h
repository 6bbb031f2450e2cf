// C declarations the Glibc module does not export (bench/reference/epoll-relay.swift).
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/epoll.h>
#include <netinet/tcp.h>
static inline int lean_accept4(int fd) { return accept4(fd, 0, 0, SOCK_NONBLOCK); }
