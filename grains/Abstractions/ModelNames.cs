using System.Buffers;

namespace MedServe;

/// <summary>What model names and versions may look like (they are grain keys and URL segments).</summary>
/// <remarks>
/// Checked on every inference (metric labels, the audit), so by a vectorised scan rather than a regular expression
/// (which also let a final line feed through: <c>$</c> matches before one).
/// </remarks>
public static class ModelNames
{
    private static readonly SearchValues<char> NameChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789._-");
    private static readonly SearchValues<char> VersionChars = SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

    /// <summary>1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit.</summary>
    public static bool IsValidName(string? name) =>
        name is { Length: >= 1 and <= 63 } && (char.IsAsciiLetterLower(name[0]) || char.IsAsciiDigit(name[0])) && !name.AsSpan().ContainsAnyExcept(NameChars);

    /// <summary>1-32 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit.</summary>
    public static bool IsValidVersion(string? version) =>
        version is { Length: >= 1 and <= 32 } && char.IsAsciiLetterOrDigit(version[0]) && !version.AsSpan().ContainsAnyExcept(VersionChars);
}
