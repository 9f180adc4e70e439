// Subcommands of the aigc command: one file each (src/cli/cmd_NAME.cpp), registered in main.cpp.
// A command's callback throws aigc::Error for user errors; main prints it as one line and exits 1.
#pragma once

#include <CLI/CLI.hpp>

namespace aigc::cli {

void command_info_register(CLI::App& app);
void command_tokenize_register(CLI::App& app);
void command_quantize_register(CLI::App& app);
void command_convert_register(CLI::App& app);
void command_text_register(CLI::App& app);
void command_chat_register(CLI::App& app);
void command_bench_register(CLI::App& app);
void command_image_register(CLI::App& app);
// `aigc bench image` (cmd_bench_image.cpp), added under `aigc bench`.
void command_bench_image_register(CLI::App* bench);
void command_train_register(CLI::App& app);  // also adds `bench train`: register after bench
void command_serve_register(CLI::App& app);
void command_eval_register(CLI::App& app);  // `aigc eval image` (cmd_eval_image.cpp)

}  // namespace aigc::cli
