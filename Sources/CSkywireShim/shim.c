#define _GNU_SOURCE
#include "CSkywireShim.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/udp.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <sched.h>
#include <pthread.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

int skw_tun_open(char *name, size_t name_len, int vnet_hdr, int multi_queue) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (vnet_hdr) ifr.ifr_flags |= IFF_VNET_HDR;
    if (multi_queue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    if (name != NULL && name_len > 0) {
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    }
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (name != NULL && name_len > 0) {
        size_t n = name_len < IFNAMSIZ ? name_len : IFNAMSIZ;
        strncpy(name, ifr.ifr_name, n - 1);
        name[n - 1] = '\0';
    }
    return fd;
}

int skw_tun_set_offload(int fd, unsigned int flags) { return ioctl(fd, TUNSETOFFLOAD, flags); }
int skw_tun_set_vnet_hdr_size(int fd, int size) { return ioctl(fd, TUNSETVNETHDRSZ, &size); }
unsigned int skw_tun_f_csum(void) { return TUN_F_CSUM; }
unsigned int skw_tun_f_tso4(void) { return TUN_F_TSO4; }
unsigned int skw_tun_f_tso6(void) { return TUN_F_TSO6; }
unsigned int skw_tun_f_uso4(void) { return TUN_F_USO4; }
unsigned int skw_tun_f_uso6(void) { return TUN_F_USO6; }
size_t skw_ifnamsiz(void) { return IFNAMSIZ; }
unsigned int skw_if_nametoindex(const char *name) { return if_nametoindex(name); }

int skw_udp_set_segment(int fd, int segment_size) {
    return setsockopt(fd, SOL_UDP, UDP_SEGMENT, &segment_size, sizeof(segment_size));
}
int skw_udp_set_gro(int fd, int on) {
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on));
}
int skw_set_reuseaddr(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
}

#define SKW_MAX_BATCH 64

unsigned skw_max_batch(void) { return SKW_MAX_BATCH; }

int skw_udp_send_batch(int fd, const uint8_t *arena, size_t slot_size, const uint16_t *lengths,
                       const struct sockaddr_storage *addrs, const socklen_t *addr_lens, unsigned count) {
    struct mmsghdr msgs[SKW_MAX_BATCH];
    struct iovec iov[SKW_MAX_BATCH];
    if (count > SKW_MAX_BATCH) count = SKW_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        iov[i].iov_base = (void *)(arena + (size_t)i * slot_size);
        iov[i].iov_len = lengths[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = (void *)&addrs[i];
        msgs[i].msg_hdr.msg_namelen = addr_lens[i];
    }
    return sendmmsg(fd, msgs, count, MSG_DONTWAIT);
}

int skw_udp_socket(int family) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        int saved = errno; close(fd); errno = saved; return -1;
    }
    return fd;
}

int skw_udp_recv_batch(int fd, uint8_t *arena, size_t slot_size, uint32_t *lengths,
                       struct sockaddr_storage *addrs, uint16_t *segment_sizes, unsigned count) {
    struct mmsghdr msgs[SKW_MAX_BATCH];
    struct iovec iov[SKW_MAX_BATCH];
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control[SKW_MAX_BATCH];
    if (count > SKW_MAX_BATCH) count = SKW_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        iov[i].iov_base = arena + (size_t)i * slot_size;
        iov[i].iov_len = slot_size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        msgs[i].msg_hdr.msg_control = control[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(control[i].buf);
    }
    int n = recvmmsg(fd, msgs, count, MSG_DONTWAIT, NULL);
    for (int i = 0; i < n; i++) {
        lengths[i] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0 : msgs[i].msg_len;
        segment_sizes[i] = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                int size;
                memcpy(&size, CMSG_DATA(c), sizeof(size));
                segment_sizes[i] = (uint16_t)size;
            }
        }
    }
    return n;
}

int skw_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

_Static_assert(skw_epoll_ctl_add == EPOLL_CTL_ADD && skw_epoll_ctl_del == EPOLL_CTL_DEL &&
               skw_epoll_ctl_mod == EPOLL_CTL_MOD, "epoll_ctl ops");
_Static_assert(skw_epollin == EPOLLIN && skw_epollout == EPOLLOUT && skw_epollerr == EPOLLERR &&
               skw_epollhup == EPOLLHUP && skw_epollrdhup == EPOLLRDHUP, "epoll events");

int skw_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int skw_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data = {.u64 = data}};
    return epoll_ctl(epfd, op, fd, &ev);
}

int skw_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms) {
    struct epoll_event evs[64];
    if (capacity > 64) capacity = 64;
    int n = epoll_wait(epfd, evs, capacity, timeout_ms);
    for (int i = 0; i < n; i++) { events[i] = evs[i].events; data[i] = evs[i].data.u64; }
    return n;
}

int skw_timerfd_create(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }

int skw_timerfd_set_absolute(int fd, uint64_t deadline_ns) {
    struct itimerspec spec = {{0, 0}, {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)}};
    if (deadline_ns == 0) spec.it_value.tv_nsec = 0;
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

int skw_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int skw_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

int skw_accept_nonblock(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

int skw_malloc_trim(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}

int skw_unshare_netns(void) { return unshare(CLONE_NEWNET); }

ssize_t skw_writev2(int fd, const void *a, size_t a_len, const void *b, size_t b_len) {
    struct iovec iov[2] = {{(void *)a, a_len}, {(void *)b, b_len}};
    return writev(fd, iov, 2);
}

#define SKW_GSO_MAX_BATCH 128
#define SKW_GSO_MAX_BYTES 65000

unsigned skw_udp_gso_max_batch(void) { return SKW_GSO_MAX_BATCH; }

int skw_udp_send_gso(int fd, const uint8_t *arena, size_t slot_size, const uint16_t *lengths,
                     const struct sockaddr_storage *addrs, const socklen_t *addr_lens, unsigned count, int gso) {
    struct mmsghdr msgs[SKW_GSO_MAX_BATCH];
    struct iovec iov[SKW_GSO_MAX_BATCH];
    unsigned segments[SKW_GSO_MAX_BATCH];
    union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } control[SKW_GSO_MAX_BATCH];
    if (count > SKW_GSO_MAX_BATCH) count = SKW_GSO_MAX_BATCH;
    unsigned m = 0, i = 0;
    while (i < count) {
        unsigned j = i + 1;
        size_t bytes = lengths[i];
        if (gso) {
            /* Same address and length; a shorter datagram may close the run. */
            while (j < count && j - i < skw_udp_gso_max_segments && lengths[j] <= lengths[i]
                   && bytes + lengths[j] <= SKW_GSO_MAX_BYTES && addr_lens[j] == addr_lens[i]
                   && memcmp(&addrs[j], &addrs[i], addr_lens[i]) == 0) {
                bytes += lengths[j];
                j++;
                if (lengths[j - 1] < lengths[i]) break;
            }
        }
        memset(&msgs[m], 0, sizeof(msgs[m]));
        for (unsigned k = i; k < j; k++) {
            iov[k].iov_base = (void *)(arena + (size_t)k * slot_size);
            iov[k].iov_len = lengths[k];
        }
        msgs[m].msg_hdr.msg_iov = &iov[i];
        msgs[m].msg_hdr.msg_iovlen = j - i;
        msgs[m].msg_hdr.msg_name = (void *)&addrs[i];
        msgs[m].msg_hdr.msg_namelen = addr_lens[i];
        if (j - i > 1) {
            memset(&control[m], 0, sizeof(control[m]));
            msgs[m].msg_hdr.msg_control = control[m].buf;
            msgs[m].msg_hdr.msg_controllen = sizeof(control[m].buf);
            struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[m].msg_hdr);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = lengths[i];
            memcpy(CMSG_DATA(c), &size, sizeof(size));
        }
        segments[m] = j - i;
        m++;
        i = j;
    }
    int sent = sendmmsg(fd, msgs, m, MSG_DONTWAIT);
    if (sent <= 0) return sent < 0 ? -1 : 0;
    int datagrams = 0;
    for (int k = 0; k < sent; k++) datagrams += (int)segments[k];
    return datagrams;
}

int skw_netlink_address_events(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -1;
    struct sockaddr_nl local;
    memset(&local, 0, sizeof(local));
    local.nl_family = AF_NETLINK;
    local.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}
