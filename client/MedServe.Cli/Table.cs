namespace MedServe.Cli;

/// <summary>A plain text table: a header row and left-aligned columns two spaces apart.</summary>
internal sealed class Table(params string[] headers)
{
    private readonly List<string[]> _rows = [];

    public Table Add(params string?[] cells)
    {
        _rows.Add([.. cells.Select(c => string.IsNullOrEmpty(c) ? "-" : c)]);
        return this;
    }

    public void WriteTo(TextWriter output)
    {
        var widths = headers.Select((h, i) => _rows.Select(r => r[i].Length).Prepend(h.Length).Max()).ToArray();
        foreach (var row in _rows.Prepend(headers))
        {
            output.WriteLine(string.Join("  ", row.Select((c, i) => i == row.Length - 1 ? c : c.PadRight(widths[i]))).TrimEnd());
        }
    }
}
