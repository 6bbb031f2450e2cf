// Bench reference, not product code: the visors' two-hop SOCKS5 shape (client end answers the
// greeting, one persistent TCP link to the exit carrying each connection as a framed stream, the
// exit connects) written in Swift on raw epoll: no SwiftNIO, no encryption, one thread per end.
// It shows what a NIO-free Swift datapath costs per request (docs/socks.md "Performance").
// Assumes what the bench's curl does: greeting and CONNECT (IPv4) in separate reads, small
// writes that complete (no flow control: request rate only, not bulk); anything else ends the
// process.
// Build: swiftc -O -import-objc-header epoll-relay.h epoll-relay.swift -o epoll-relay
// Run:   epoll-relay srv BIND_IP (link on BIND_IP:1081) | epoll-relay cli EXIT_IP (SOCKS on 127.0.0.1:1080)
import Glibc

let mode = CommandLine.arguments[1]
let peerIP = CommandLine.arguments[2]

func die(_ s: String) -> Never { perror(s); exit(1) }
func sockaddrIn(_ ip: String, _ port: UInt16) -> sockaddr_in {
    var a = sockaddr_in(); a.sin_family = sa_family_t(AF_INET); a.sin_port = port.bigEndian
    inet_pton(AF_INET, ip, &a.sin_addr); return a
}
func listenOn(_ ip: String, _ port: UInt16) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    var one: Int32 = 1; setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
    var a = sockaddrIn(ip, port)
    let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if r != 0 { die("bind") }
    listen(fd, 1024); return fd
}
func nodelay(_ fd: Int32) { var one: Int32 = 1; setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4) }

let ep = epoll_create1(0)
func add(_ fd: Int32, _ ev: UInt32) { var e = epoll_event(); e.events = ev; e.data.fd = fd; epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) }
func mod(_ fd: Int32, _ ev: UInt32) { var e = epoll_event(); e.events = ev; e.data.fd = fd; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) }
let EIN = EPOLLIN.rawValue, EOUT = EPOLLOUT.rawValue

// Frames: type u8, id u32, len u16, payload.
let tOPEN: UInt8 = 1, tOPENOK: UInt8 = 2, tDATA: UInt8 = 3, tFIN: UInt8 = 4
var linkFD: Int32 = -1
var linkOut = [UInt8](); linkOut.reserveCapacity(1 << 20)
var linkIn = [UInt8](); linkIn.reserveCapacity(1 << 20)
func frame(_ t: UInt8, _ id: UInt32, _ p: UnsafeRawBufferPointer) {
    linkOut.append(t)
    linkOut.append(UInt8(id >> 24)); linkOut.append(UInt8((id >> 16) & 0xff)); linkOut.append(UInt8((id >> 8) & 0xff)); linkOut.append(UInt8(id & 0xff))
    linkOut.append(UInt8(p.count >> 8)); linkOut.append(UInt8(p.count & 0xff))
    linkOut.append(contentsOf: p)
}
func flushLink() {
    if linkOut.isEmpty { return }
    let n = linkOut.withUnsafeBytes { write(linkFD, $0.baseAddress, $0.count) }
    if n != linkOut.count { die("short link write (experiment assumes none)") }
    linkOut.removeAll(keepingCapacity: true)
}

enum Phase { case greeting, request, waitOpen, connecting, relay }
final class Conn { var fd: Int32; var id: UInt32; var phase: Phase; var finIn = false; var finOut = false
    init(fd: Int32, id: UInt32, phase: Phase) { self.fd = fd; self.id = id; self.phase = phase } }
var byFD = [Int32: Conn](), byID = [UInt32: Conn]()
var nextID: UInt32 = 1
let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 16)  // frame length is a u16

func closeConn(_ c: Conn) { close(c.fd); byFD[c.fd] = nil; byID[c.id] = nil }
func maybeDone(_ c: Conn) { if c.finIn && c.finOut { closeConn(c) } }

func onConnReadable(_ c: Conn) {
    while true {
        let n = read(c.fd, buf.baseAddress, buf.count)
        if n < 0 { if errno == EAGAIN { return }; closeConn(c); return }
        if n == 0 {
            if !c.finOut { c.finOut = true; frame(tFIN, c.id, UnsafeRawBufferPointer(start: nil, count: 0)) }
            mod(c.fd, 0); maybeDone(c); return
        }
        let b = UnsafeRawBufferPointer(rebasing: buf[0..<n])
        switch c.phase {
        case .greeting:
            var r: [UInt8] = [5, 0]; _ = write(c.fd, &r, 2); c.phase = .request
        case .request:
            // 05 01 00 01 a b c d p p
            frame(tOPEN, c.id, UnsafeRawBufferPointer(rebasing: b[4..<10])); c.phase = .waitOpen
        case .relay, .waitOpen, .connecting:
            frame(tDATA, c.id, b)
        }
        if n < buf.count { return }
    }
}

func onLinkFrame(_ t: UInt8, _ id: UInt32, _ p: UnsafeRawBufferPointer) {
    if t == tOPEN {  // exit side
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        nodelay(fd)
        var a = sockaddr_in(); a.sin_family = sa_family_t(AF_INET)
        memcpy(&a.sin_addr, p.baseAddress!, 4); memcpy(&a.sin_port, p.baseAddress! + 4, 2)
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        let c = Conn(fd: fd, id: id, phase: .connecting); byFD[fd] = c; byID[id] = c
        add(fd, EOUT | EIN)
        return
    }
    guard let c = byID[id] else { return }
    switch t {
    case tOPENOK:
        var r: [UInt8] = [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]; _ = write(c.fd, &r, 10); c.phase = .relay
    case tDATA:
        _ = write(c.fd, p.baseAddress, p.count)
    case tFIN:
        c.finIn = true; shutdown(c.fd, Int32(SHUT_WR)); maybeDone(c)
    default: break
    }
}

func onLinkReadable() {
    while true {
        let n = read(linkFD, buf.baseAddress, buf.count)
        if n < 0 { if errno == EAGAIN { break }; die("link read") }
        if n == 0 { die("link closed") }
        linkIn.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        if n < buf.count { break }
    }
    var off = 0
    linkIn.withUnsafeBytes { all in
        while all.count - off >= 7 {
            let len = Int(all[off + 5]) << 8 | Int(all[off + 6])
            if all.count - off < 7 + len { break }
            let id = UInt32(all[off + 1]) << 24 | UInt32(all[off + 2]) << 16 | UInt32(all[off + 3]) << 8 | UInt32(all[off + 4])
            onLinkFrame(all[off], id, UnsafeRawBufferPointer(rebasing: all[(off + 7)..<(off + 7 + len)]))
            off += 7 + len
        }
    }
    linkIn.removeFirst(off)
}

var listenFD: Int32
if mode == "cli" {
    listenFD = listenOn("127.0.0.1", 1080)
    linkFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var a = sockaddrIn(peerIP, 1081)
    let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(linkFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if r != 0 { die("link connect") }
    _ = fcntl(linkFD, F_SETFL, O_NONBLOCK); nodelay(linkFD)
    add(linkFD, EIN)
} else {
    listenFD = listenOn(peerIP, 1081)
}
add(listenFD, EIN)

var events = [epoll_event](repeating: epoll_event(), count: 64)
while true {
    let n = epoll_wait(ep, &events, 64, -1)
    if n < 0 { if errno == EINTR { continue }; die("epoll_wait") }
    for i in 0..<Int(n) {
        let fd = events[i].data.fd, ev = events[i].events
        if fd == listenFD {
            while true {
                let c = lean_accept4(listenFD)
                if c < 0 { break }
                nodelay(c)
                if mode == "cli" {
                    let conn = Conn(fd: c, id: nextID, phase: .greeting); nextID += 2
                    byFD[c] = conn; byID[conn.id] = conn; add(c, EIN)
                } else {
                    linkFD = c; add(c, EIN)
                }
            }
        } else if fd == linkFD {
            onLinkReadable()
        } else if let c = byFD[fd] {
            if c.phase == .connecting && ev & EOUT != 0 {
                c.phase = .relay; mod(fd, EIN)
                frame(tOPENOK, c.id, UnsafeRawBufferPointer(start: nil, count: 0))
            }
            if ev & (EIN | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { onConnReadable(c) }
        }
    }
    flushLink()
}
