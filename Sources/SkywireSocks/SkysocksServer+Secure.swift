import Logging
import NIOCore
import NIOPosix
import SkywireSystem

/// `--secure` refused every address of a destination (SOCKS5 reply 0x02, RFC 1928 §6).
struct SkysocksDestinationRefused: Error, CustomStringConvertible {
    /// The refused addresses, each with the rule that refused it.
    let refusals: [(address: IPAddress, refusal: DestinationRefusal)]

    /// The rules, for the log line.
    var rules: String { refusals.map { "\($0.refusal)" }.joined(separator: "; ") }
    var description: String { "refused by --secure: \(rules)" }
}

extension Socks5Address {
    /// The address of an IPv4/IPv6 destination; nil for a domain name.
    var ipAddress: IPAddress? {
        switch self {
        case .ipv4(let a): return IPAddress(v4: a)
        case .ipv6(let high, let low): return IPAddress(v6High: high, low: low)
        case .domain: return nil
        }
    }
}

extension SkysocksServerApp {
    /// Why `--secure` refuses `address` (an IP address; a name is checked by what it resolves to,
    /// `admitted(_:)`); nil when allowed or `--secure=false`.
    func refusal(for address: Socks5Address) -> (address: IPAddress, refusal: DestinationRefusal)? {
        guard let destinations, let ip = address.ipAddress, let refusal = destinations.refusal(for: ip) else {
            return nil
        }
        return (ip, refusal)
    }

    /// The resolved addresses `--secure` allows, in their order; throws `SkysocksDestinationRefused`
    /// when it allows none of them.
    func admitted(_ addresses: [SocketAddress]) throws(SkysocksDestinationRefused) -> [SocketAddress] {
        guard destinations != nil else { return addresses }
        var allowed: [SocketAddress] = []
        var refused: [(address: IPAddress, refusal: DestinationRefusal)] = []
        for address in addresses {
            if let destination = Socks5Address(address), let found = refusal(for: destination) {
                refused.append(found)
            } else {
                allowed.append(address)
            }
        }
        guard !allowed.isEmpty || refused.isEmpty else { throw SkysocksDestinationRefused(refusals: refused) }
        if !refused.isEmpty {
            logger.debug("resolved addresses left out by --secure", metadata: [
                "addresses": "\(refused.map { "\($0.address)" })",
            ])
        }
        return allowed
    }

    /// Logs and counts a CONNECT that `--secure` refused (the caller replies 0x02).
    func noteRefused(_ request: Socks5Request, remote: String, _ refused: SkysocksDestinationRefused) {
        logger.info("destination refused by --secure", metadata: [
            "destination": "\(request.address):\(request.port)", "rule": "\(refused.rules)", "remote": "\(remote)",
        ])
        counters.update { $0.refusedDestinations += 1 }
    }
}
