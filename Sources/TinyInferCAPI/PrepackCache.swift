// The C API of the prepack cache (include/tinyinfer.h, section "prepack
// cache"): loads that take packed weights from an image file, and the image
// of a loaded model. The core checks and maps images
// (TinyInferCore/Runtime/PrepackImage.swift); the cached load and save
// (tinf_model_load_file_cached, tinf_model_save_prepack_cached) find and
// write them in the cache folder with the shim's file code
// (TinyInferShims/cachefile.c), as the Python package's
// tinyinfer.prepack_cache does.

import CTinyInfer
import TinyInferCore
import TinyInferShims

@c @implementation
public func tinf_prepack_layout_version() -> Int32 { Int32(PrepackImage.layoutVersion) }

/// The request of a _prepacked load, or a status for bad arguments.
private func prepackRequest(_ imagePath: UnsafePointer<CChar>?, _ key: UnsafeRawPointer?, _ keySize: Int)
  -> (PrepackRequest?, tinf_status?)
{
  guard let imagePath else { return (nil, nil) }
  guard keySize <= 64 else { return (nil, fail(.invalidArgument, "the prepack key is \(keySize) bytes, at most 64")) }
  guard key != nil || keySize == 0 else { return (nil, fail(.invalidArgument, "the prepack key is NULL")) }
  return (PrepackRequest(imagePath: String(cString: imagePath), key: keyBytes(key, keySize)), nil)
}

/// The caller's key bytes (key_size checked by the caller: at most 64).
private func keyBytes(_ key: UnsafeRawPointer?, _ keySize: Int) -> [UInt8] {
  var k = [UInt8](repeating: 0, count: keySize)
  if let key { for i in 0..<keySize { k[i] = key.load(fromByteOffset: i, as: UInt8.self) } }
  return k
}

@c @implementation
public func tinf_model_load_file_prepacked(
  _ path: UnsafePointer<CChar>?, _ flags: UInt32, _ imagePath: UnsafePointer<CChar>?, _ key: UnsafeRawPointer?,
  _ keySize: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let path, let out else {
    return fail(.invalidArgument, "tinf_model_load_file_prepacked: path and out_model must not be NULL")
  }
  guard flags & ~loadFlagsKnown == 0 else { return fail(.invalidArgument, "unknown load flags \(flags)") }
  let (request, bad) = prepackRequest(imagePath, key, keySize)
  if let bad { return bad }
  return status { () throws(TinfError) in
    let m = try Model.load(
      path: String(cString: path), optimize: flags & loadNoGraphPasses == 0, sparse: sparseChoice(flags),
      prepack: request)
    out.pointee = retain(ModelHandle(m))
  }
}

/// Bytes of the path buffers of a cached load (folder, image file).
private let cachePathCapacity = 8192

/// The NUL-terminated text in a path buffer.
private func text(_ buf: [CChar]) -> String {
  let n = buf.firstIndex(of: 0) ?? buf.count
  return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The cache folder of a cached load or save: the caller's ("" = no
/// cache), else the default one unless TINYINFER_PREPACK_CACHE turns the
/// cache off; nil for no cache (or a path that does not fit).
private func cacheFolder(_ folder: UnsafePointer<CChar>?) -> [CChar]? {
  var folderPath = [CChar](repeating: 0, count: cachePathCapacity)
  if let folder {
    var n = 0
    while folder[n] != 0 && n < cachePathCapacity - 1 {
      folderPath[n] = folder[n]
      n += 1
    }
    return n > 0 && folder[n] == 0 ? folderPath : nil
  }
  return ti_prepack_cache_env_off() == 0 && ti_cache_folder(&folderPath, cachePathCapacity) > 0 ? folderPath : nil
}

@c @implementation
public func tinf_model_load_file_cached(
  _ path: UnsafePointer<CChar>?, _ flags: UInt32, _ folder: UnsafePointer<CChar>?,
  _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let path, let out else {
    return fail(.invalidArgument, "tinf_model_load_file_cached: path and out_model must not be NULL")
  }
  guard flags & ~loadFlagsKnown == 0 else { return fail(.invalidArgument, "unknown load flags \(flags)") }
  var request: PrepackRequest? = nil
  if let folderPath = cacheFolder(folder) {
    var image = [CChar](repeating: 0, count: cachePathCapacity)
    var key = [UInt8](repeating: 0, count: 32)
    let found = ti_prepack_plan(
      path, folderPath, flags, tinf_version_string(), ti_cpu_level_name(ti_cpu_level()),
      Int32(PrepackImage.layoutVersion), &image, cachePathCapacity, &key)
    if found == 0 { request = PrepackRequest(imagePath: text(image), key: key) }
  }
  return status { () throws(TinfError) in
    let m = try Model.load(
      path: String(cString: path), optimize: flags & loadNoGraphPasses == 0, sparse: sparseChoice(flags),
      prepack: request)
    if let request, m.prepackState == .fromImage {
      // Recently used: the size bound evicts the least recently used images.
      request.imagePath.withCString { ti_touch_file($0) }
    }
    out.pointee = retain(ModelHandle(m))
  }
}

@c @implementation
public func tinf_cache_folder(
  _ dst: UnsafeMutablePointer<CChar>?, _ capacity: Int, _ length: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard dst != nil || capacity == 0 else { return nullArg("tinf_cache_folder", "dst") }
  var buf = [CChar](repeating: 0, count: cachePathCapacity)
  let n = ti_cache_folder(&buf, cachePathCapacity)
  guard n >= 0 else {
    return fail(.io, "cannot find the cache folder (the working folder is gone, or the path is too long)")
  }
  handOutText(text(buf), dst, capacity, length)
  return ok()
}

@c @implementation
public func tinf_cache_key(
  _ parts: UnsafePointer<UnsafeRawPointer?>?, _ sizes: UnsafePointer<Int>?, _ count: Int32,
  _ out: UnsafeMutableRawPointer?
) -> tinf_status {
  guard let out else { return nullArg("tinf_cache_key", "out_key") }
  guard count >= 0 else { return fail(.invalidArgument, "tinf_cache_key: count \(count) is negative") }
  guard count == 0 || (parts != nil && sizes != nil) else { return nullArg("tinf_cache_key", "parts or sizes") }
  if let parts, let sizes {
    for i in 0..<Int(count) where parts[i] == nil && sizes[i] != 0 {
      return fail(.invalidArgument, "tinf_cache_key: part \(i) is NULL with size \(sizes[i])")
    }
  }
  ti_cache_key(parts, sizes, count, out.assumingMemoryBound(to: UInt8.self))
  return ok()
}

@c @implementation
public func tinf_model_load_buffer_prepacked(
  _ data: UnsafeRawPointer?, _ size: Int, _ flags: UInt32, _ imagePath: UnsafePointer<CChar>?,
  _ key: UnsafeRawPointer?, _ keySize: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let data, let out else {
    return fail(.invalidArgument, "tinf_model_load_buffer_prepacked: data and out_model must not be NULL")
  }
  guard flags & ~loadFlagsKnown == 0 else { return fail(.invalidArgument, "unknown load flags \(flags)") }
  let (request, bad) = prepackRequest(imagePath, key, keySize)
  if let bad { return bad }
  return status { () throws(TinfError) in
    let m = try Model.load(
      buffer: UnsafeRawBufferPointer(start: data, count: size), optimize: flags & loadNoGraphPasses == 0,
      sparse: sparseChoice(flags), prepack: request)
    out.pointee = retain(ModelHandle(m))
  }
}

@c @implementation
public func tinf_model_prepack_info(
  _ model: OpaquePointer?, _ state: UnsafeMutablePointer<Int32>?, _ fromImage: UnsafeMutablePointer<Int32>?,
  _ packed: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  guard let m = modelHandle(model) else { return nullArg("tinf_model_prepack_info", "model") }
  state?.pointee = m.model.prepackState.rawValue
  fromImage?.pointee = Int32(clamping: m.model.prepackedFromImage)
  packed?.pointee = Int32(clamping: m.model.packedAtLoad)
  return ok()
}

@c @implementation
public func tinf_model_prepack_note(
  _ model: OpaquePointer?, _ dst: UnsafeMutablePointer<CChar>?, _ capacity: Int, _ length: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let m = modelHandle(model) else { return nullArg("tinf_model_prepack_note", "model") }
  guard dst != nil || capacity == 0 else { return nullArg("tinf_model_prepack_note", "dst") }
  handOutText(m.model.prepackNote, dst, capacity, length)
  return ok()
}

/// Text for the caller: its length in bytes (without the NUL) into `length`
/// (may be NULL), and its bytes, truncated to fit and NUL-terminated, into
/// `dst` (capacity bytes; nothing when dst is NULL or capacity is 0).
private func handOutText(
  _ text: String, _ dst: UnsafeMutablePointer<CChar>?, _ capacity: Int, _ length: UnsafeMutablePointer<Int>?
) {
  var text = text
  text.withUTF8 { u in
    length?.pointee = u.count
    guard let dst, capacity > 0 else { return }
    let n = min(u.count, capacity - 1)
    for i in 0..<n { dst[i] = CChar(bitPattern: u[i]) }
    dst[n] = 0
  }
}

@c @implementation
public func tinf_model_prepack_image(
  _ model: OpaquePointer?, _ key: UnsafeRawPointer?, _ keySize: Int, _ dst: UnsafeMutableRawPointer?,
  _ dstSize: Int, _ outSize: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let m = modelHandle(model), let outSize else { return nullArg("tinf_model_prepack_image") }
  guard keySize <= 64 else { return fail(.invalidArgument, "the prepack key is \(keySize) bytes, at most 64") }
  guard key != nil || keySize == 0 else { return nullArg("tinf_model_prepack_image", "key") }
  outSize.pointee = m.model.prepackImageSize
  guard let dst else { return ok() }
  do throws(TinfError) {
    try m.model.writePrepackImage(
      key: keyBytes(key, keySize), into: UnsafeMutableRawBufferPointer(start: dst, count: dstSize))
    return ok()
  } catch {
    return fail(error)
  }
}

@c @implementation
public func tinf_model_save_prepack_cached(
  _ model: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ flags: UInt32, _ folder: UnsafePointer<CChar>?,
  _ written: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  written?.pointee = 0
  guard let m = modelHandle(model), let path else { return nullArg("tinf_model_save_prepack_cached", "model or path") }
  guard flags & ~loadFlagsKnown == 0 else { return fail(.invalidArgument, "unknown load flags \(flags)") }
  guard let folderPath = cacheFolder(folder) else { return ok() }  // the cache is off
  let model = m.model
  // An image mapped already, or nothing packed: nothing to save.
  guard model.prepackState != .fromImage, model.prepackImageSize > 0 else { return ok() }
  var imagePath = [CChar](repeating: 0, count: cachePathCapacity)
  var key = [UInt8](repeating: 0, count: 32)
  var fileSize = Int64(model.fileSize)
  let planned = ti_prepack_save_plan(
    path, folderPath, flags, tinf_version_string(), ti_cpu_level_name(ti_cpu_level()),
    Int32(PrepackImage.layoutVersion), &imagePath, cachePathCapacity, &key, &fileSize)
  let name = String(cString: path)
  if planned == -1 { return fail(.invalidArgument, "'\(name)' is not a regular file") }
  if planned == -2 {
    return fail(
      .invalidArgument,
      "'\(name)' is not the file this model was loaded from (\(fileSize) bytes, the model's \(model.fileSize))")
  }
  if planned != 0 {
    return fail(.io, "cannot save the prepack cache of '\(name)': \(String(cString: ti_shim_strerror(planned)))")
  }
  let size = model.prepackImageSize
  guard let buf = ti_shim_alloc(size) else { return fail(.outOfMemory, "cannot allocate \(size) bytes for the prepack image") }
  defer { ti_shim_free(buf) }
  do throws(TinfError) {
    try model.writePrepackImage(key: key, into: UnsafeMutableRawBufferPointer(start: buf, count: size))
  } catch {
    return fail(error)
  }
  let e = ti_cache_write_atomic(imagePath, buf, size)
  if e != 0 {
    return fail(.io, "cannot write '\(text(imagePath))': \(String(cString: ti_shim_strerror(e)))")
  }
  ti_cache_trim(folderPath, imagePath)
  written?.pointee = 1
  return ok()
}
