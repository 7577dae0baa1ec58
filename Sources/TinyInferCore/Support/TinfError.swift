/// Status codes of the library; the raw values are the C API's `tinf_status`.
public enum Status: Int32, Sendable {
  case ok = 0
  case invalidArgument = 1
  case io = 2
  case badFormat = 3
  case version = 4
  case unsupportedOp = 5
  case unsupportedDType = 6
  case shape = 7
  case outOfMemory = 8
  case invalidState = 9
  case `internal` = 10
  case runtime = 11
}

/// The one error type of the core: a status and a message for people.
public struct TinfError: Error, Sendable {
  public let status: Status
  public let message: String

  public init(_ status: Status, _ message: String) {
    self.status = status
    self.message = message
  }

  static func format(_ m: String) -> TinfError { TinfError(.badFormat, m) }
  static func shape(_ m: String) -> TinfError { TinfError(.shape, m) }
  static func arg(_ m: String) -> TinfError { TinfError(.invalidArgument, m) }
  static func unsupported(_ m: String) -> TinfError { TinfError(.unsupportedOp, m) }

  /// The same error with context put in front of the message.
  func prefixed(_ context: String) -> TinfError { TinfError(status, context + ": " + message) }
}
