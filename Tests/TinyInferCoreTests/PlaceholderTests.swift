import XCTest
@testable import TinyInferCore
final class PlaceholderTests: XCTestCase { func testNothing() { XCTAssertEqual(DType.float32.size, 4) } }
