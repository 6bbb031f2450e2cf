// C shim for what Swift cannot import from Linux headers: ioctl request numbers,
// struct ifreq access, and function-like macros. Every name is prefixed `skw_`.
#ifndef C_SKYWIRE_SHIM_H
#define C_SKYWIRE_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <stddef.h>
#include <linux/virtio_net.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Opens `/dev/net/tun` and attaches a TUN interface (TUNSETIFF with IFF_TUN|IFF_NO_PI,
/// plus IFF_VNET_HDR when `vnet_hdr` is non-zero). `name` is in/out, IFNAMSIZ bytes.
/// Returns the descriptor, or -1 with errno set.
int skw_tun_open(char *name, size_t name_len, int vnet_hdr, int multi_queue);

/// TUNSETOFFLOAD with the given TUN_F_* flags (see skw_tun_f_*).
int skw_tun_set_offload(int fd, unsigned int flags);
/// TUNSETVNETHDRSZ.
int skw_tun_set_vnet_hdr_size(int fd, int size);

unsigned int skw_tun_f_csum(void);
unsigned int skw_tun_f_tso4(void);
unsigned int skw_tun_f_tso6(void);
unsigned int skw_tun_f_uso4(void);
unsigned int skw_tun_f_uso6(void);

/// struct virtio_net_hdr (<linux/virtio_net.h>): what a TUN opened with IFF_VNET_HDR puts
/// before every packet. Multi-byte fields are in host byte order (no TUNSETVNETBE).
enum {
    skw_vnet_hdr_size = sizeof(struct virtio_net_hdr),
    skw_vnet_hdr_flags_offset = offsetof(struct virtio_net_hdr, flags),
    skw_vnet_hdr_gso_type_offset = offsetof(struct virtio_net_hdr, gso_type),
    skw_vnet_hdr_hdr_len_offset = offsetof(struct virtio_net_hdr, hdr_len),
    skw_vnet_hdr_gso_size_offset = offsetof(struct virtio_net_hdr, gso_size),
    skw_vnet_hdr_csum_start_offset = offsetof(struct virtio_net_hdr, csum_start),
    skw_vnet_hdr_csum_offset_offset = offsetof(struct virtio_net_hdr, csum_offset),
    skw_vnet_hdr_f_needs_csum = VIRTIO_NET_HDR_F_NEEDS_CSUM,
    skw_vnet_hdr_f_data_valid = VIRTIO_NET_HDR_F_DATA_VALID,
    skw_vnet_hdr_gso_none = VIRTIO_NET_HDR_GSO_NONE,
    skw_vnet_hdr_gso_tcpv4 = VIRTIO_NET_HDR_GSO_TCPV4,
    skw_vnet_hdr_gso_tcpv6 = VIRTIO_NET_HDR_GSO_TCPV6,
    skw_vnet_hdr_gso_ecn = VIRTIO_NET_HDR_GSO_ECN,
};

/// writev(2) of two buffers as one packet (a TUN's virtio_net_hdr, then the IP packet).
ssize_t skw_writev2(int fd, const void *a, size_t a_len, const void *b, size_t b_len);

/// IFNAMSIZ from <net/if.h>.
size_t skw_ifnamsiz(void);

/// if_nametoindex(3), 0 when unknown.
unsigned int skw_if_nametoindex(const char *name);

/// setsockopt(SOL_UDP, UDP_SEGMENT) / (SOL_UDP, UDP_GRO).
int skw_udp_set_segment(int fd, int segment_size);
int skw_udp_set_gro(int fd, int on);

/// SO_REUSEADDR/SO_REUSEPORT helpers used by listeners.
int skw_set_reuseaddr(int fd);

/// Sends `count` datagrams with one sendmmsg(2): datagram i is `lengths[i]` bytes at
/// `arena + i * slot_size`, to `addrs[i]` (`addr_lens[i]` bytes). Returns how many were sent
/// (>= 1), or -1 with errno set when the first one failed. `count` is at most SKW_MAX_BATCH.
int skw_udp_send_batch(int fd, const uint8_t *arena, size_t slot_size, const uint16_t *lengths,
                       const struct sockaddr_storage *addrs, const socklen_t *addr_lens, unsigned count);

/// The largest batch `skw_udp_send_batch` takes (UIO_MAXIOV-safe).
unsigned skw_max_batch(void);

/// Like `skw_udp_send_batch`, but with `gso` non-zero each run of consecutive datagrams to
/// the same address with the same length (the run's last may be shorter) goes out as one
/// message with UDP_SEGMENT (Linux UDP GSO, at most `skw_udp_gso_max_segments` per message and
/// 64 KiB of payload). Returns how many datagrams were sent (>= 1), or -1 with errno set when
/// the first message failed (EIO/EINVAL: no GSO on this path; resend with `gso` 0).
/// `count` is at most `skw_udp_gso_max_batch()`.
int skw_udp_send_gso(int fd, const uint8_t *arena, size_t slot_size, const uint16_t *lengths,
                     const struct sockaddr_storage *addrs, const socklen_t *addr_lens, unsigned count, int gso);

/// The largest `count` of `skw_udp_send_gso`.
unsigned skw_udp_gso_max_batch(void);
enum { skw_udp_gso_max_segments = 64 };

/// Creates a non-blocking, close-on-exec UDP socket for `family` with SO_REUSEADDR set.
int skw_udp_socket(int family);

/// Receives up to `count` messages with one recvmmsg(2) (MSG_DONTWAIT): message i lands at
/// `arena + i * slot_size` (at most `slot_size` bytes), its length in `lengths[i]` (0 when it
/// was truncated), its source in `addrs[i]`, and with UDP_GRO on the socket the size of the
/// datagrams the kernel coalesced into it in `segment_sizes[i]` (0 for a single datagram).
/// Returns how many messages arrived, or -1 with errno set. `count` is at most SKW_MAX_BATCH.
int skw_udp_recv_batch(int fd, uint8_t *arena, size_t slot_size, uint32_t *lengths,
                       struct sockaddr_storage *addrs, uint16_t *segment_sizes, unsigned count);

/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC): a descriptor that wakes poll(2).
int skw_eventfd(void);

/// epoll_create1(EPOLL_CLOEXEC).
int skw_epoll_create(void);
/// epoll_ctl(2) with `op` one of skw_epoll_ctl_*, `events` a mask of skw_epoll_*, `data` the
/// event's user data.
int skw_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// epoll_wait(2) into two parallel arrays (events, user data) of `capacity` entries.
int skw_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int capacity, int timeout_ms);
enum {
    skw_epoll_ctl_add = 1, skw_epoll_ctl_del = 2, skw_epoll_ctl_mod = 3,
    skw_epollin = 0x001, skw_epollout = 0x004, skw_epollerr = 0x008, skw_epollhup = 0x010,
    skw_epollrdhup = 0x2000,
};

/// timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC).
int skw_timerfd_create(void);
/// Arms `fd` to expire once at CLOCK_MONOTONIC time `deadline_ns` (TFD_TIMER_ABSTIME); 0 disarms.
int skw_timerfd_set_absolute(int fd, uint64_t deadline_ns);

/// unshare(CLONE_NEWNET): moves the calling thread into a new, empty network namespace (tests).
int skw_unshare_netns(void);

/// pipe2(fds, O_CLOEXEC).
int skw_pipe_cloexec(int fds[2]);

/// pthread_setname_np(pthread_self(), name) (a GNU extension): the calling thread's name in
/// /proc/self/task/TID/comm and `ps -L`, at most 15 bytes.
int skw_set_thread_name(const char *name);

/// accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC): the next connection of a listening socket.
int skw_accept_nonblock(int fd);

/// A NETLINK_ROUTE socket (non-blocking, close-on-exec) subscribed to interface-address changes
/// (RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR): the kernel queues an RTM_NEWADDR/RTM_DELADDR message
/// on it before the request that changed the address returns. -1 with errno set on failure.
int skw_netlink_address_events(void);

/// malloc_trim(0) (<malloc.h>, glibc): returns freed heap memory of every arena to the system;
/// 1 when memory was released. 0 without glibc.
int skw_malloc_trim(void);

#ifdef __cplusplus
}
#endif

#include "CSkywirePty.h"
#endif
