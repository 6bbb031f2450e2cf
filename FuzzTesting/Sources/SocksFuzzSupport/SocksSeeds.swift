// SOCKS5 messages for the seeds of the three SOCKS harnesses, built with the module's own encoders.
import NIOCore
import SkywireSocks

/// `VER CMD RSV ATYP DST.ADDR DST.PORT` (RFC 1928 §4).
public func socks5Request(_ command: Socks5Command, _ address: Socks5Address, _ port: UInt16) -> [UInt8] {
    var b = ByteBuffer(bytes: [Socks5.version, command.rawValue, Socks5.reserved])
    address.write(to: &b)
    b.writeInteger(port)
    return Array(b.readableBytesView)
}

/// The RFC 1929 request for `user` / `secret` (the credentials fuzz-socks-server expects).
public let socks5SeedCredentials: [UInt8] = [Socks5.authVersion, 4] + Array("user".utf8) + [6] + Array("secret".utf8)
