import XCTest
@testable import SkywireWire

final class SkywireWireSmokeTests: XCTestCase {
    func testModuleLoads() {
        XCTAssertTrue(true)
    }
}
