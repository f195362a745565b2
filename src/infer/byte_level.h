#pragma once
// GPT-2's byte-level alphabet (bytes_to_unicode in openai/gpt-2 encoder.py): every byte maps to one
// printable character, so any byte string is a string of "characters" a BPE vocabulary can cover.
// Printable Latin-1 bytes map to themselves; the other 68 to U+0100.. in byte order (space -> 'Ġ').
#include <string>
#include <string_view>

namespace strata::byte_level {

// UTF-8 of the character byte b maps to.
const std::string& char_of(unsigned char b);

// Appends the mapped characters of every byte of s to out.
void encode(std::string_view s, std::string& out);

// Bytes of one vocabulary token, as the ByteLevel decoder of `tokenizers` gives them: each
// character mapped back to its byte, or, if any character is outside the alphabet (an added token
// such as "<|im_start|>" with a space, say), the token's own UTF-8 unchanged.
std::string decode_token(std::string_view token);

}  // namespace strata::byte_level
