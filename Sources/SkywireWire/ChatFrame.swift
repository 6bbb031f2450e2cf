// Skychat's wire protocol (docs/skychat.md "Wire", PROTOCOL.md §9): a mux stream to port 1
// carries frames `version:u8 | type:u8 | length:u16 big-endian | payload[length]`. The sender
// writes `message` frames; the receiver answers each with an `ack`. Pure: bytes in, frames out.

/// One chat message as it travels (`message` frame).
public struct ChatWireMessage: Sendable, Equatable {
    /// Chosen by the sender (random); the receiver drops a repeat from the same sender.
    public var id: UInt64
    /// Milliseconds since the Unix epoch, by the sender's clock.
    public var timeMillis: UInt64
    /// The group the message was written in (its id and name), nil for a direct message.
    public var group: ChatGroupRef?
    /// UTF-8, 1...`ChatProtocol.maxTextBytes` bytes, no NUL.
    public var text: String

    public init(id: UInt64, timeMillis: UInt64, group: ChatGroupRef? = nil, text: String) {
        self.id = id
        self.timeMillis = timeMillis
        self.group = group
        self.text = text
    }
}

/// A group as a message names it: the creator's random id and the group's name.
public struct ChatGroupRef: Sendable, Equatable {
    public var id: UInt64
    /// UTF-8, 1...`ChatProtocol.maxGroupNameBytes` bytes, no control characters.
    public var name: String
    public init(id: UInt64, name: String) {
        self.id = id
        self.name = name
    }
}

/// What the receiver did with a message (`ack`'s status byte).
public enum ChatAckStatus: UInt8, Sendable, CaseIterable {
    /// Stored (or stored before: a repeat); the sender removes it from its queue.
    case delivered = 0
    /// Not stored now (the sender's rate is over the limit): send it again later.
    case retryLater = 1
}

/// The frame types.
public enum ChatFrameType: UInt8, Sendable, CaseIterable {
    case message = 1
    case ack = 2
}

/// One frame.
public enum ChatFrame: Sendable, Equatable {
    case message(ChatWireMessage)
    case ack(id: UInt64, status: ChatAckStatus)

    public var type: ChatFrameType {
        switch self {
        case .message: .message
        case .ack: .ack
        }
    }
}

/// A frame refused: the reason, for the log and the stream's reset.
public struct ChatProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The protocol's constants and limits.
public enum ChatProtocol {
    /// The first byte of every frame.
    public static let version: UInt8 = 1
    /// version (1) + type (1) + length (2).
    public static let headerLength = frameHeader.length
    /// `version | type | length:u16`; a header is refused for its version, then its type, then its length.
    public static let frameHeader = AppFrameHeader(version: version, lengthBytes: MemoryLayout<UInt16>.size,
                                                   maxPayload: maxPayload, order: .typeThenLength)
    /// The longest text of one message, in UTF-8 bytes.
    public static let maxTextBytes = 4096
    /// The longest group name, in UTF-8 bytes.
    public static let maxGroupNameBytes = 64
    /// `flags` bit: a group id and name follow.
    public static let groupFlag: UInt8 = 0x01
    /// id (8) + time (8) + flags (1) + group id (8) + name length (1).
    static let maxMessageOverhead = 26
    /// The largest payload of any frame; a header announcing more is refused before it is read.
    public static let maxPayload = maxMessageOverhead + maxGroupNameBytes + maxTextBytes
    /// An `ack`'s payload: id (8) + status (1).
    static let ackLength = 9

    /// Why `text` cannot be sent, nil when it can (non-empty, at most `maxTextBytes`, no NUL).
    public static func textProblem(_ text: String) -> String? {
        let n = text.utf8.count
        if n == 0 { return "the message is empty" }
        if n > maxTextBytes { return "the message is \(n) bytes, at most \(maxTextBytes)" }
        if text.utf8.contains(0) { return "the message contains NUL" }
        return nil
    }

    /// Why `name` cannot name a group, nil when it can (1...`maxGroupNameBytes` bytes, no control characters).
    public static func groupNameProblem(_ name: String) -> String? {
        let n = name.utf8.count
        if n == 0 { return "the group name is empty" }
        if n > maxGroupNameBytes { return "the group name is \(n) bytes, at most \(maxGroupNameBytes)" }
        if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) { return "the group name contains control characters" }
        return nil
    }
}
