// JPEG decoding through libjpeg's decompression API, errors by setjmp/longjmp as libjpeg intends.
#include "formats/image_jpeg.h"

#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <utility>

#include "core/error.h"

#include <jerror.h>
#include <jpeglib.h>

namespace aigc {

namespace {

// Everything the decode shares with libjpeg's callbacks. Lives in jpeg_decode's frame, outside the
// function that calls setjmp, so that nothing the longjmp returns to is left indeterminate.
struct JpegJob {
  jpeg_error_mgr err{};
  jpeg_progress_mgr progress{};
  std::jmp_buf jump{};
  char message[JMSG_LENGTH_MAX] = {};
  bool truncated = false;
  int64_t max_pixels = 0;
  JpegImage out;
  enum class Fail { None, Library, TooLarge, Cmyk, Scans } fail = Fail::None;
};

JpegJob* job_of(j_common_ptr c) { return static_cast<JpegJob*>(c->client_data); }

void on_error_exit(j_common_ptr c) {
  JpegJob* job = job_of(c);
  (*c->err->format_message)(c, job->message);
  job->fail = JpegJob::Fail::Library;
  std::longjmp(job->jump, 1);
}

// Warnings (level -1) and trace messages: never printed. A premature end of data is remembered:
// libjpeg fills the rest of the image with grey, PIL refuses the file, and so does image_decode.
void on_emit_message(j_common_ptr c, int level) {
  if (level < 0) {
    ++c->err->num_warnings;
    if (c->err->msg_code == JWRN_JPEG_EOF) job_of(c)->truncated = true;
  }
}

void on_output_message(j_common_ptr) {}

void on_progress(j_common_ptr c) {
  if (!c->is_decompressor) return;
  if (reinterpret_cast<j_decompress_ptr>(c)->input_scan_number > kJpegScansMax) {
    JpegJob* job = job_of(c);
    job->fail = JpegJob::Fail::Scans;
    std::longjmp(job->jump, 1);
  }
}

// Returns false with job->fail set. Only cinfo (its address is taken) and job (a pointer to the
// caller's frame) are live across the setjmp; libjpeg's memory is freed on both paths.
bool jpeg_run(JpegJob* job, const uint8_t* data, size_t size) {
  jpeg_decompress_struct cinfo{};
  cinfo.err = jpeg_std_error(&job->err);
  job->err.error_exit = on_error_exit;
  job->err.emit_message = on_emit_message;
  job->err.output_message = on_output_message;
  cinfo.client_data = job;
  if (setjmp(job->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  cinfo.client_data = job;  // jpeg_create_decompress clears the struct but keeps err and client_data
  job->progress.progress_monitor = on_progress;
  cinfo.progress = &job->progress;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (int64_t{cinfo.image_width} * cinfo.image_height > job->max_pixels || cinfo.image_width == 0 ||
      cinfo.image_height == 0) {
    job->out.w = static_cast<int>(cinfo.image_width), job->out.h = static_cast<int>(cinfo.image_height);
    job->fail = JpegJob::Fail::TooLarge;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    job->fail = JpegJob::Fail::Cmyk;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;  // grey is replicated, YCbCr converted
  jpeg_start_decompress(&cinfo);
  job->out.w = static_cast<int>(cinfo.output_width), job->out.h = static_cast<int>(cinfo.output_height);
  try {
    job->out.rgb.resize(static_cast<size_t>(job->out.w) * job->out.h * 3);
  } catch (...) {  // no libjpeg frame between here and the throw: unwinding is safe
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = job->out.rgb.data() + static_cast<size_t>(cinfo.output_scanline) * job->out.w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace

bool jpeg_signature(std::span<const uint8_t> b) { return b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff; }

JpegImage jpeg_decode(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels) {
  JpegJob job;
  job.max_pixels = max_pixels;
  if (!jpeg_run(&job, bytes.data(), bytes.size())) {
    switch (job.fail) {
      case JpegJob::Fail::TooLarge:
        error_throw(fmt::format("image is {} x {} pixels; 1 to {} pixels are accepted", job.out.w, job.out.h, max_pixels), name);
      case JpegJob::Fail::Cmyk:
        error_throw("CMYK JPEG files are not supported", name, "convert the image to RGB (or save it as PNG)");
      case JpegJob::Fail::Scans:
        error_throw(fmt::format("corrupt JPEG: more than {} scans", kJpegScansMax), name, "the file is damaged");
      default:
        error_throw(fmt::format("cannot decode JPEG: {}", job.message), name, "the file is damaged or not a JPEG");
    }
  }
  if (job.truncated)
    error_throw("truncated JPEG: the data ends before the image does", name, "the file is incomplete");
  return std::move(job.out);
}

}  // namespace aigc
