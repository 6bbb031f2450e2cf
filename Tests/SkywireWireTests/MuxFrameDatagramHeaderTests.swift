import SkywireWire
import XCTest

/// The in-place DATAGRAM header (`MuxFrameLayout.writeDatagramHeader` / `datagramPorts`, used by
/// the VPN batches and the sinks) is the codec's encoding, byte for byte.
final class MuxFrameDatagramHeaderTests: XCTestCase {
    func testHeaderMatchesTheCodec() throws {
        for (dst, src) in [(UInt16(0), UInt16(0)), (44, 45), (0x1234, 0xfedc), (0xffff, 1)] {
            let payload: [UInt8] = [0x45, 0x00, 0xde, 0xad]
            let encoded = MuxFrame<ArraySlice<UInt8>>.datagram(destinationPort: dst, sourcePort: src, payload: payload[...]).encoded
            var inPlace = [UInt8](repeating: 0xaa, count: MuxFrameLayout.datagramHeader) + payload
            inPlace.withUnsafeMutableBytes {
                MuxFrameLayout.writeDatagramHeader(destinationPort: dst, sourcePort: src, into: $0)
            }
            XCTAssertEqual(inPlace, encoded)
            let ports = encoded.withUnsafeBytes { MuxFrameLayout.datagramPorts($0) }
            XCTAssertEqual(ports?.destination, dst)
            XCTAssertEqual(ports?.source, src)
        }
    }

    func testPortsOfOtherFramesAreNil() throws {
        XCTAssertNil([UInt8](hex: "08 0001 00").withUnsafeBytes { MuxFrameLayout.datagramPorts($0) })
        XCTAssertNil(MuxFrame<ArraySlice<UInt8>>.fin(streamID: MuxStreamID(3)).encoded.withUnsafeBytes { MuxFrameLayout.datagramPorts($0) })
    }
}
