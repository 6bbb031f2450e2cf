import NIOConcurrencyHelpers
import NIOCore
import SkywireSystem

/// Which accepted stcpr sockets may stay (docs/hardening.md): at most `Limits.perAddress` per
/// source address and `Limits.total` in all, of which at most `halfOpenPerAddress` /
/// `halfOpenTotal` without a completed handshake. A refused socket is closed at once (its
/// descriptor and memory never reach a link). Accept runs on one loop, links end on any:
/// `lock` guards the counts.
final class StcprAdmission: Sendable {
    struct Limits: Sendable, Equatable {
        /// Sockets from one address: a NAT with many visors behind it still fits; one host cannot
        /// take the listener's descriptors.
        var perAddress = 64
        /// Sockets in all (each holds a descriptor and a link; the service's LimitNOFILE is higher).
        var total = 4096
        /// Sockets from one address that have not completed a handshake: an honest dialler
        /// completes its handshake in one round trip.
        var halfOpenPerAddress = 16
        /// Sockets in all without a completed handshake (each a few KB for at most
        /// `StcprListener.handshakeDeadline`): an attacker needs 128 addresses (IPv6: /64s) to
        /// reach it, and then delays other handshakes until a deadline frees a slot.
        var halfOpenTotal = 2048
    }

    /// Why a socket was refused.
    enum Refusal: Equatable, Sendable {
        case perAddress, total, halfOpenPerAddress, halfOpenTotal

        var reason: RefusalLog.Reason {
            switch self {
            case .perAddress: .connectionsPerAddress
            case .total: .connectionsTotal
            case .halfOpenPerAddress: .halfOpenPerAddress
            case .halfOpenTotal: .halfOpenTotal
            }
        }
    }

    /// After this many sockets closed since the last trim, and when fewer than that are still
    /// open (a mass close), `released` asks for `malloc_trim(0)`: glibc keeps freed heap memory
    /// of short-lived links otherwise (docs/hardening.md measures it).
    static let trimAfterReleases = 256

    private struct Counts {
        var byAddress: [String: (open: Int, halfOpen: Int)] = [:]
        var open = 0
        var halfOpen = 0
        var releasedSinceTrim = 0
    }

    let limits: Limits
    private let counts = NIOLockedValueBox(Counts())

    init(limits: Limits = Limits()) { self.limits = limits }

    /// What the per-address limits count: the IPv4 address, or the IPv6 /64 (one host, or one
    /// customer's LAN, usually holds a whole /64), from `getpeername`'s text form.
    static func sourceKey(_ ipAddress: String?) -> String {
        guard let text = ipAddress, let ip = IPAddress(text) else { return ipAddress ?? "?" }
        if ip.family == .v4 { return ip.description }
        // An IPv4-mapped IPv6 address counts as its IPv4 address.
        if ip.bytes.prefix(12).elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
           let v4 = IPAddress(bytes: Array(ip.bytes.suffix(4))) {
            return v4.description
        }
        return (IPAddress(bytes: Array(ip.bytes.prefix(8)) + [UInt8](repeating: 0, count: 8))?.description ?? text) + "/64"
    }

    /// Admits a new (half-open) socket from `address`, or says why not.
    func admit(_ address: String) -> Refusal? {
        counts.withLockedValue { c in
            let mine = c.byAddress[address] ?? (0, 0)
            if c.open >= limits.total { return .total }
            if mine.open >= limits.perAddress { return .perAddress }
            if c.halfOpen >= limits.halfOpenTotal { return .halfOpenTotal }
            if mine.halfOpen >= limits.halfOpenPerAddress { return .halfOpenPerAddress }
            c.byAddress[address] = (mine.open + 1, mine.halfOpen + 1)
            c.open += 1
            c.halfOpen += 1
            return nil
        }
    }

    /// An admitted socket from `address` completed its handshake.
    func handshakeCompleted(_ address: String) {
        counts.withLockedValue { c in
            guard var mine = c.byAddress[address], mine.halfOpen > 0 else { return }
            mine.halfOpen -= 1
            c.byAddress[address] = mine
            c.halfOpen -= 1
        }
    }

    /// An admitted socket from `address` closed (`halfOpen`: before completing its handshake).
    /// True when memory should be handed back to the system now (`trimAfterReleases`).
    func released(_ address: String, halfOpen: Bool) -> Bool {
        counts.withLockedValue { c in
            guard var mine = c.byAddress[address], mine.open > 0 else { return false }
            mine.open -= 1
            c.open -= 1
            if halfOpen && mine.halfOpen > 0 {
                mine.halfOpen -= 1
                c.halfOpen -= 1
            }
            c.byAddress[address] = mine.open == 0 ? nil : mine
            c.releasedSinceTrim += 1
            guard c.releasedSinceTrim >= Self.trimAfterReleases, c.open < c.releasedSinceTrim else { return false }
            c.releasedSinceTrim = 0
            return true
        }
    }

    /// Sockets admitted and not yet released, and how many of them are half-open.
    var current: (open: Int, halfOpen: Int) { counts.withLockedValue { ($0.open, $0.halfOpen) } }
}
