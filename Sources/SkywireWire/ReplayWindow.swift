// The sudph anti-replay window, PROTOCOL.md §4.2: a 2048-bit bitmap in 64-bit blocks as in RFC 6479 §2
// (and WireGuard's counter validation). One block is kept as slack so advancing clears whole blocks,
// so the window covers the highest accepted counter and the `windowSize - 1` counters below it.

/// Replay protection for one receiving session. `check` is read-only and runs before decryption;
/// `commit` records a counter once its tag has verified. O(1); no allocation after `init`.
public struct ReplayWindow: Sendable {
    /// Bitmap size in bits (RFC 6479's "N").
    public static let bitmapBits = 2048
    static let bitsPerBlock = 64
    static let blockCount = bitmapBits / bitsPerBlock
    static let blockIndexMask = UInt64(blockCount - 1)
    static let bitIndexMask = UInt64(bitsPerBlock - 1)
    static let blockShift: UInt64 = 6

    /// Counters accepted below the highest one: highest − windowSize < counter ≤ highest.
    public static let windowSize = UInt64(bitmapBits - bitsPerBlock)   // 1984
    /// REJECT_AFTER_MESSAGES (§4.3): counters at or above it are never accepted.
    public static let rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)   // 2^64 − 2^13 − 1

    private var blocks: [UInt64]
    /// Highest counter committed so far; meaningful once `hasReceived`.
    public private(set) var highest: UInt64 = 0
    public private(set) var hasReceived = false

    public init() {
        blocks = [UInt64](repeating: 0, count: Self.blockCount)
    }

    /// True when `counter` may be new: below the reject limit, not older than the window, and not
    /// already committed. Does not change the window.
    public func check(_ counter: UInt64) -> Bool {
        guard counter < Self.rejectAfterMessages else { return false }
        guard hasReceived else { return true }
        if counter > highest { return true }
        if highest - counter >= Self.windowSize { return false }
        let block = Int((counter >> Self.blockShift) & Self.blockIndexMask)
        let bit = UInt64(1) << (counter & Self.bitIndexMask)
        return blocks[block] & bit == 0
    }

    /// Records `counter` after its packet authenticated. Returns false (and changes nothing) when
    /// `check` would have refused it, e.g. a duplicate that raced in meanwhile.
    @discardableResult
    public mutating func commit(_ counter: UInt64) -> Bool {
        guard check(counter) else { return false }
        let newBlock = counter >> Self.blockShift
        if !hasReceived {
            blocks.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = 0 } }
            hasReceived = true
            highest = counter
        } else if counter > highest {
            // Clear the blocks the window slides over (at most all of them).
            let oldBlock = highest >> Self.blockShift
            let advance = min(newBlock - oldBlock, UInt64(Self.blockCount))
            blocks.withUnsafeMutableBufferPointer { b in
                var i: UInt64 = 1
                while i <= advance {
                    b[Int((oldBlock &+ i) & Self.blockIndexMask)] = 0
                    i += 1
                }
            }
            highest = counter
        }
        let block = Int(newBlock & Self.blockIndexMask)
        blocks[block] |= UInt64(1) << (counter & Self.bitIndexMask)
        return true
    }
}
