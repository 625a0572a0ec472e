using System.Text.RegularExpressions;

namespace MedServe;

/// <summary>What model names and versions may look like (they are grain keys and URL segments).</summary>
public static partial class ModelNames
{
    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,62}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]
    private static partial Regex VersionPattern();

    /// <summary>1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit.</summary>
    public static bool IsValidName(string? name) => name is not null && NamePattern().IsMatch(name);

    /// <summary>1-32 characters of A-Z, a-z, 0-9, '.', '_' or '-'.</summary>
    public static bool IsValidVersion(string? version) => version is not null && VersionPattern().IsMatch(version);
}
