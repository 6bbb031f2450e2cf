import SkywireTestSupport
import XCTest
@testable import SkywireWire

extension Array where Element == UInt8 {
    init(hex: String) {
        let digits = hex.filter { !$0.isWhitespace }
        var out: [UInt8] = []
        var i = digits.startIndex
        while i < digits.endIndex {
            let j = digits.index(i, offsetBy: 2)
            out.append(UInt8(digits[i..<j], radix: 16)!)
            i = j
        }
        self = out
    }
}

/// Decodes a frame from an array, returning the error instead of throwing.
func decodeFrame(_ bytes: [UInt8]) -> Result<MuxFrame<ArraySlice<UInt8>>, MuxFrameError> {
    Result { () throws(MuxFrameError) in try MuxFrame<ArraySlice<UInt8>>.decode(bytes) }
}

func parsePacket(_ bytes: [UInt8]) -> Result<SudphPacket, SudphPacketError> {
    bytes.withUnsafeBytes { raw in Result { () throws(SudphPacketError) in try SudphPacket.parse(raw) } }
}

func decodeRecord(_ bytes: [UInt8]) -> Result<SudphRecord, SudphRecordError> {
    bytes.withUnsafeBytes { raw in Result { () throws(SudphRecordError) in try SudphRecord.decode(raw) } }
}
