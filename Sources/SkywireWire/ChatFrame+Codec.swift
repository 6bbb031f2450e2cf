// Encoding and incremental decoding of `ChatFrame` (docs/skychat.md "Wire", PROTOCOL.md §9).

extension ChatFrame {
    /// The frame's bytes, or the reason the frame cannot be sent (text or name out of bounds).
    public func encoded() throws(ChatProtocolError) -> [UInt8] {
        var payload: [UInt8] = []
        switch self {
        case .message(let m):
            if let problem = ChatProtocol.textProblem(m.text) { throw ChatProtocolError(problem) }
            payload.reserveCapacity(ChatProtocol.maxMessageOverhead + m.text.utf8.count)
            payload.appendBigEndian(m.id)
            payload.appendBigEndian(m.timeMillis)
            if let group = m.group {
                if let problem = ChatProtocol.groupNameProblem(group.name) { throw ChatProtocolError(problem) }
                payload.append(ChatProtocol.groupFlag)
                payload.appendBigEndian(group.id)
                payload.append(UInt8(group.name.utf8.count))
                payload.append(contentsOf: group.name.utf8)
            } else {
                payload.append(0)
            }
            payload.append(contentsOf: m.text.utf8)
        case .ack(let id, let status):
            payload.appendBigEndian(id)
            payload.append(status.rawValue)
        }
        var out: [UInt8] = [ChatProtocol.version, type.rawValue]
        out.appendBigEndian(UInt16(payload.count))
        out.append(contentsOf: payload)
        return out
    }

    /// One payload of type `type` (known from the header); refuses a malformed payload.
    public static func decode(type: ChatFrameType, payload p: ArraySlice<UInt8>) throws(ChatProtocolError) -> ChatFrame {
        var r = AppPayloadReader<ChatFrameType, ChatProtocolError>(bytes: p, type: type)
        switch type {
        case .message:
            let id = try r.u64(), time = try r.u64(), flags = try r.u8()
            guard flags & ~ChatProtocol.groupFlag == 0 else { throw ChatProtocolError("message: unknown flags 0x\(String(flags, radix: 16))") }
            var group: ChatGroupRef?
            if flags & ChatProtocol.groupFlag != 0 {
                let groupID = try r.u64()
                let name = try r.utf8(Int(try r.u8()))
                if let problem = ChatProtocol.groupNameProblem(name) { throw ChatProtocolError("message: \(problem)") }
                group = ChatGroupRef(id: groupID, name: name)
            }
            let text = try r.utf8(r.remaining)
            if let problem = ChatProtocol.textProblem(text) { throw ChatProtocolError("message: \(problem)") }
            return .message(ChatWireMessage(id: id, timeMillis: time, group: group, text: text))
        case .ack:
            guard p.count == ChatProtocol.ackLength else { throw ChatProtocolError("ack: \(p.count) bytes, expected \(ChatProtocol.ackLength)") }
            let id = try r.u64(), raw = try r.u8()
            guard let status = ChatAckStatus(rawValue: raw) else { throw ChatProtocolError("ack: unknown status \(raw)") }
            return .ack(id: id, status: status)
        }
    }
}

extension ChatFrame: AppFrame {
    public static var frameHeader: AppFrameHeader { ChatProtocol.frameHeader }
}

/// Splits a byte stream into Skychat frames (`AppFrameDecoder`): version, type, then length are
/// checked from the header.
public typealias ChatFrameDecoder = AppFrameDecoder<ChatFrame>
