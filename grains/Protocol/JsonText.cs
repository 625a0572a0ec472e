using System.Buffers;
using System.Text;

namespace MedServe.Protocol;

/// <summary>Checks on JSON text before it is parsed.</summary>
public static class JsonText
{
    /// <summary>
    /// Refuses (400) text that is not UTF-8. System.Text.Json accepts invalid sequences inside strings until one is read,
    /// and then throws an <see cref="InvalidOperationException"/>, which would surface as a server error. The message
    /// names where the first bad sequence is, never its bytes.
    /// </summary>
    public static void RequireUtf8(ReadOnlySpan<byte> text, string what, string? field = null)
    {
        if (System.Text.Unicode.Utf8.IsValid(text))
        {
            return;
        }
        var offset = 0;
        while (offset < text.Length)
        {
            if (Rune.DecodeFromUtf8(text[offset..], out _, out var consumed) != OperationStatus.Done)
            {
                break;
            }
            offset += consumed;
        }
        throw MedServeException.Invalid($"{what} is not valid UTF-8 (an invalid byte sequence at byte {offset + 1}); send JSON as UTF-8 text", field ?? "body");
    }
}
