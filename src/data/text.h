#pragma once
// Text rules of curation: whitespace simplification, part-number scrubbing, UTF-8-safe cuts,
// and the stable 64-bit hashes used for deduplication and seeded sampling.
#include <cstdint>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace pricer::data {

// A "part number": at least 7 characters, only A-Z and 0-9, with at least one letter and one
// digit ("WPW10314173", "661570V"). Surrounding punctuation (",.;:()[]!?'\"") is ignored when
// testing, so "W10837240," counts. Such words say nothing about price to a model and cost tokens.
bool is_part_number(std::string_view word);

// Appends the words of `in` to `out` with single spaces (any run of ASCII whitespace becomes one
// separator), dropping part numbers when scrub_part_numbers. Adds a leading space when `out`
// does not end with a newline or is non-empty. Returns the number of words appended.
size_t append_words(std::string& out, std::string_view in, bool scrub_part_numbers);

// Number of UTF-8 code points (continuation bytes not counted).
size_t utf8_length(std::string_view s);
// Byte length of the longest prefix of s with at most max_chars code points, cut at a word
// boundary (whitespace) when there is one in the prefix.
size_t utf8_prefix_words(std::string_view s, size_t max_chars);
// Drops an incomplete UTF-8 sequence at the end (after cutting a byte-level token list).
void trim_partial_utf8(std::string& s);
// Removes trailing ASCII whitespace.
void rtrim(std::string& s);

// The first `budget` tokens of `text`, decoded back (an incomplete UTF-8 character and trailing
// whitespace dropped), or `text` itself when it is not longer; *n_tokens receives the number of
// tokens kept. Curation cuts every summary this way, and prediction cuts raw texts the same.
std::string cut_to_tokens(const std::string& text, const Tokenizer& tok, int64_t budget, uint32_t* n_tokens = nullptr);

// Keeps the first max_words whitespace-separated words (separators kept as they are).
// Returns the number of words kept.
size_t truncate_words(std::string& s, size_t max_words);
size_t count_words(std::string_view s);

// Lower-cased (ASCII), whitespace-collapsed title: "USB-C  Cable" and "usb-c cable" collide.
std::string normalize_title(std::string_view title);

// 64-bit FNV-1a with a final avalanche: stable across platforms and runs, so dedup and seeded
// sampling give the same dataset everywhere.
uint64_t hash64(std::string_view s);

}  // namespace pricer::data
