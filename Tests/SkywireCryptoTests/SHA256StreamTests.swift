import XCTest
@testable import SkywireCrypto

final class SHA256StreamTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// FIPS 180-2 appendix B vectors, fed whole and in uneven pieces.
    func testKnownVectorsInPieces() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ]
        for (input, expected) in vectors {
            let whole = SHA256Stream()
            whole.update(Array(input.utf8))
            XCTAssertEqual(hex(whole.finalize()), expected)
            let pieces = SHA256Stream()
            var rest = Array(input.utf8)[...]
            var size = 1
            while !rest.isEmpty {
                pieces.update(Array(rest.prefix(size)))
                rest = rest.dropFirst(size)
                size += 2
            }
            XCTAssertEqual(hex(pieces.finalize()), expected, input)
        }
    }
}
