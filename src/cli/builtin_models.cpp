#include "cli/builtin_models.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace aigc::cli {

namespace fs = std::filesystem;

std::string builtin_model_path(std::string_view name, std::string_view how_to_make) {
  std::vector<fs::path> dirs;
  if (const char* d = std::getenv("AIGC_MODELS_DIR"); d && *d) dirs.emplace_back(d);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path bin = exe.parent_path();
    dirs.push_back(bin.parent_path() / "models");
    dirs.push_back(bin / "models");
    dirs.push_back(bin.parent_path() / "share" / "aigc" / "models");
  }
  std::vector<std::string> tried;
  for (const fs::path& d : dirs) {
    const fs::path p = d / fs::path(std::string(name));
    if (fs::is_regular_file(p, ec)) return p.string();
    tried.push_back(p.string());
  }
  error_throw(fmt::format("no model given and the built-in model {} was not found", name),
              fmt::format("looked in: {}", fmt::join(tried, ", ")),
              "pass a model with -m FILE, or set AIGC_MODELS_DIR to the folder holding " + std::string(name) +
                  (how_to_make.empty() ? std::string() : "; " + std::string(how_to_make)));
}

std::string builtin_image_model_path() {
  return builtin_model_path(kBuiltinImageModel,
                            "make it with scripts/train_image_default.sh (trains it into models/)");
}

}  // namespace aigc::cli
