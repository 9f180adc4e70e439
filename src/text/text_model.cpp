#include "text/text_model.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "text/model_gpt2.h"
#include "text/model_llama.h"

namespace aigc {

const char* text_model_arch_names() { return "llama, mistral, qwen2, gpt2"; }

std::unique_ptr<TextModel> text_model_load(const std::string& path, FileLoadOptions opt) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path, opt));
  const std::string& arch = file->get_string("general.architecture");
  if (llama_arch_supported(arch)) return std::make_unique<LlamaModel>(LlamaModel::from_gguf(file));
  if (arch == "gpt2") return std::make_unique<Gpt2Model>(Gpt2Model::from_gguf(file));
  error_throw(fmt::format("architecture '{}' is not supported", arch), path,
              std::string("supported architectures: ") + text_model_arch_names());
}

}  // namespace aigc
