/* aigc — the engine's public C API. Stable, plain C, opaque handles; no C++ exception crosses it.
 * Every call that can fail returns an aigc_status; aigc_last_error() then describes the failure
 * (what, where, hint) for the calling thread.
 *
 *   aigc_model_file* f = NULL;
 *   if (aigc_model_file_open("model.gguf", &f) != AIGC_OK) {
 *     fprintf(stderr, "%s\n", aigc_last_error());
 *     return 1;
 *   }
 *   for (int64_t i = 0; i < aigc_model_file_tensor_count(f); ++i) {
 *     aigc_tensor_desc d;
 *     aigc_model_file_tensor(f, i, &d);
 *     printf("%s %s\n", d.name, d.type_name);
 *   }
 *   aigc_model_file_free(f);
 *
 * The API grows with the engine: text generation, images and the server come next.
 */
#ifndef AIGC_AIGC_H
#define AIGC_AIGC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum aigc_status {
  AIGC_OK = 0,
  AIGC_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer, an index out of range */
  AIGC_ERROR_FILE = 2,             /* missing, unreadable, corrupt or unsupported file */
  AIGC_ERROR_OUT_OF_MEMORY = 3,
  AIGC_ERROR_INTERNAL = 4,
} aigc_status;

const char* aigc_version(void);     /* "0.1.0" */
const char* aigc_last_error(void);  /* message of this thread's last failed call; "" if none */

/* Compute threads for every later call; n <= 0 means one per physical core (the default). */
void aigc_threads_set(int n);
int aigc_threads_get(void);

/* A model file (GGUF or safetensors, sharded safetensors via its .index.json), memory-mapped. */
typedef struct aigc_model_file aigc_model_file;

typedef struct aigc_tensor_desc {
  const char* name;      /* valid while the file is open */
  const char* type_name; /* as the file spells it: "f16", "q4_K", "BF16" */
  int32_t n_dims;
  int64_t shape[8];      /* outermost first (PyTorch order) */
  uint64_t offset;       /* bytes from the start of the file holding the data */
  uint64_t nbytes;
} aigc_tensor_desc;

aigc_status aigc_model_file_open(const char* path, aigc_model_file** out);
void aigc_model_file_free(aigc_model_file* f); /* NULL is fine */
const char* aigc_model_file_format(const aigc_model_file* f); /* "GGUF v3", "safetensors" */
int64_t aigc_model_file_tensor_count(const aigc_model_file* f);
aigc_status aigc_model_file_tensor(const aigc_model_file* f, int64_t index, aigc_tensor_desc* out);
/* Metadata value as text (GGUF arrays abbreviated); NULL when the key is absent. */
const char* aigc_model_file_metadata(const aigc_model_file* f, const char* key);

#ifdef __cplusplus
}
#endif

#endif /* AIGC_AIGC_H */
