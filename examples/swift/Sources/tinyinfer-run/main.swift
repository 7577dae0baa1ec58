// tinyinfer-run: load a .tinf model, run it once and print its outputs.
//
//     tinyinfer-run [-t THREADS] [-o OUT_PREFIX] model.tinf [input0.bin input1.bin ...]
//
// Each inputN.bin holds exactly the raw little-endian bytes of input N (for
// example `x.astype(np.float32).tofile("input0.bin")` in numpy); inputs not
// given are zeros. Prints one line per output (name, dtype, shape, first
// values); with -o it also writes OUT_PREFIX.N.bin with each output's raw
// bytes, like tests/c/run_outputs.c.
// Exit status: 0 on success, 1 on a tinyinfer error, 2 on bad usage or an I/O error.
import Foundation
import TinyInferCore

func usage() -> Never {
  FileHandle.standardError.write(Data("usage: tinyinfer-run [-t THREADS] [-o OUT_PREFIX] model.tinf [input0.bin ...]\n".utf8))
  exit(2)
}

func fail(_ message: String, _ code: Int32) -> Never {
  FileHandle.standardError.write(Data("tinyinfer-run: \(message)\n".utf8))
  exit(code)
}

var threads = 1
var outPrefix: String? = nil
var positional: [String] = []
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
  switch a {
  case "-t":
    guard let v = args.popFirst(), let n = Int(v) else { usage() }
    threads = n
  case "-o":
    guard let v = args.popFirst() else { usage() }
    outPrefix = v
  case "-h", "--help": usage()
  default: positional.append(a)
  }
}
guard let modelPath = positional.first else { usage() }
let inputFiles = positional.dropFirst()

do throws(TinfError) {
  // The model is immutable and may be shared; a session holds the memory of one run.
  let model = try Model.load(path: modelPath)
  let session = try Session.create(model: model, options: SessionOptions(threads: threads))
  guard inputFiles.count <= model.inputs.count else {
    fail("the model has \(model.inputs.count) input(s), \(inputFiles.count) file(s) given", 2)
  }
  for (i, file) in inputFiles.enumerated() {
    guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)", 2) }
    var result: Result<Void, TinfError> = .success(())
    data.withUnsafeBytes { raw in
      do throws(TinfError) { try session.setInput(i, bytes: raw) } catch { result = .failure(error) }
    }
    try result.get()
  }
  try session.run()
  for i in 0..<model.outputs.count {
    let desc = try session.outputDesc(i)
    var line = "output \(i) \(desc.name) \(desc.dtype.name) \(desc.shape)"
    if desc.dtype == .float32 {
      let values = try session.outputFloats(i)
      line += " " + values.prefix(10).map { "\($0)" }.joined(separator: " ") + (values.count > 10 ? " ..." : "")
    }
    print(line)
    if let outPrefix {
      let path = "\(outPrefix).\(i).bin"
      guard FileManager.default.createFile(atPath: path, contents: Data(try session.outputBytes(i))) else {
        fail("cannot write \(path)", 2)
      }
    }
  }
} catch {
  fail("\(error.status): \(error.message)", 1)
}
