import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

extension ControlClient {
    /// `stream.open` (docs/cli.md): asks the visor for a stream to `pk`'s app on `port` and
    /// returns the connection, which carries that stream's bytes from then on. The answer line is
    /// read a byte at a time so no stream byte is taken with it.
    public func openStream(pk: String, port: UInt16, timeout: Int) throws -> OwnedDescriptor {
        let fd: OwnedDescriptor
        do {
            fd = try Self.connect(path: path)
        } catch let e as SystemError {
            throw ControlError(.unavailable, "cannot reach the visor at \(path): \(e)")
        }
        var tv = timeval(tv_sec: self.timeout, tv_usec: 0)
        _ = setsockopt(fd.raw, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let line = try ControlCodec.encodeLine(ControlRequest(method: "stream.open", params: [
            "pk": .string(pk), "port": .int(Int64(port)), "timeout": .int(Int64(timeout)),
        ]))
        try line.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                off += try syscall("write") { write(fd.raw, raw.baseAddress! + off, raw.count - off) }
            }
        }
        var response: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n: Int
            do {
                n = try syscall("read") { read(fd.raw, &byte, 1) }
            } catch let e as SystemError where e.errno == EAGAIN || e.errno == EWOULDBLOCK {
                throw ControlError(.timeout, "the visor did not open the stream within \(self.timeout) s")
            }
            if n == 0 { throw ControlError(.unavailable, "the visor closed the control connection") }
            if byte == UInt8(ascii: "\n") { break }
            response.append(byte)
            if response.count > ControlCodec.maxLineBytes { throw ControlError(.failed, "response too long") }
        }
        let decoded = try ControlCodec.decode(ControlResponse.self, from: response)
        if let err = decoded.error {
            throw ControlError(ControlError.Code(rawValue: err.code) ?? .failed, err.message)
        }
        var none = timeval(tv_sec: 0, tv_usec: 0)
        _ = setsockopt(fd.raw, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }
}
