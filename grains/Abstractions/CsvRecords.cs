using System.Globalization;
using System.Text;
using Sylvan.Data.Csv;

namespace MedServe;

/// <summary>
/// Tabular records as CSV, for jobs: rows in (one item per row, an <c>id</c> or <c>item_id</c> column naming it),
/// results out (one row per item, every output element a column). Used by the HTTP API, the client and the CLI.
/// </summary>
public static class CsvRecords
{
    /// <summary>
    /// A job of tabular records: resolves the version (default unless given) so every row runs on the same one, and
    /// reads one item per row against that version's input. The one path for the HTTP API, the client and the CLI.
    /// </summary>
    public static async Task<JobSubmission> SubmissionAsync(IGrainFactory grains, Routing.ModelRouter router, string model, string? version,
        byte[] csv, string[]? columns, string[]? outputs)
    {
        var route = await router.ResolveAsync(model, version);
        var manifest = (await grains.GetGrain<IModelGrain>(route.Model).GetVersionAsync(route.Version))!.Manifest;
        return new JobSubmission
        {
            Model = route.Model,
            Version = route.Version,
            Items = ReadItems(csv, manifest, columns),
            Outputs = outputs,
            Source = "csv",
        };
    }

    /// <summary>
    /// One item per CSV row for a model with one input of shape [-1, n]: n numeric columns per row. Which columns:
    /// <paramref name="columns"/> when given (header names, in the model's order); else, when the input names its
    /// features (<see cref="TensorSpec.Labels"/>), the header columns of those names in the labels' order, other
    /// columns ignored; else every column but the id, in order. A header may give a column's unit as <c>name [unit]</c>
    /// (<c>s6 [mmol/L]</c>): its values are converted to the feature's unit. Each row is checked field by field against
    /// the features (<see cref="FeatureValues"/>: a number, the unit, the range, missing or its default): a row that
    /// fails becomes an item that carries its error (CSV line and feature, never the value) and is not run, while the
    /// other rows run. Whole-file errors (no header, a missing feature column, a malformed or ragged line) refuse it all.
    /// </summary>
    public static JobItem[] ReadItems(byte[] csv, ModelManifest manifest, string[]? columns)
    {
        var input = manifest.Inputs[0];
        var items = new List<JobItem>();
        foreach (var row in ReadRows(csv, manifest, columns))
        {
            var itemId = row.Id ?? (items.Count + 1).ToString(CultureInfo.InvariantCulture);
            items.Add(row.Values is { } values
                ? new JobItem(itemId, [TensorTypes.FromDoubles(input.Name, input.Datatype, [1, values.Length], values)])
                : new JobItem(itemId, []) { Error = $"CSV line {row.Line}: {string.Join("; ", row.Errors.Select(e => e.Message))}" });
        }
        return [.. items];
    }

    /// <summary>One CSV record: its line (the header is line 1), its id column's text, and its values in the model's order or its errors.</summary>
    public sealed record CsvRow(long Line, string? Id, double[]? Values, IReadOnlyList<FieldError> Errors);

    /// <summary>
    /// The records of a CSV in the model's order, each checked field by field (see <see cref="ReadItems"/>); a row that
    /// fails carries its errors instead of values. Whole-file errors throw, naming the line or column. Read as enumerated
    /// (a 200,000-row job never holds every row twice).
    /// </summary>
    public static IEnumerable<CsvRow> ReadRows(byte[] csv, ModelManifest manifest, string[]? columns)
    {
        if (manifest.Inputs is not [{ Shape: [-1, > 0] } input] || input.Datatype is not (TensorDatatype.FP32 or TensorDatatype.FP64))
        {
            throw MedServeException.Invalid($"{manifest.Name} does not take tabular records (one FP32 or FP64 input of shape [-1, n]); submit tensors as JSON", "content-type");
        }
        var width = (int)input.Shape[1];
        var named = input.Labels is { } l && l.Length == width ? new FeatureValues(manifest) : null;
        using var text = new StreamReader(new MemoryStream(csv), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        if (text.Peek() < 0)
        {
            throw MedServeException.Invalid("the CSV is empty", "body");
        }
        CsvDataReader parser;
        try
        {
            parser = CsvDataReader.Create(text, new CsvDataReaderOptions
            {
                HasHeaders = true,
                Delimiter = ',', // never guessed from the header
                ResultSetMode = ResultSetMode.SingleResult,
            });
        }
        catch (Exception e) when (e is CsvFormatException or CsvRecordTooLargeException)
        {
            throw MedServeException.Invalid("CSV line 1 (the header) is malformed", "line 1");
        }
        using var _ = parser;
        var header = Enumerable.Range(0, parser.FieldCount).Select(parser.GetName).ToArray();
        if (header.Length == 0 || header is [{ Length: 0 }])
        {
            throw MedServeException.Invalid("the CSV is empty", "body");
        }
        var idColumn = Array.FindIndex(header, h => h.Trim().ToLowerInvariant() is "id" or "item_id");
        var featureColumns = columns is not null ? NamedColumns(header, columns)
            : named is not null ? MatchedColumns(header, idColumn, named, manifest.Name)
            : [.. Enumerable.Range(0, header.Length).Where(i => i != idColumn)];
        if (featureColumns.Length != width)
        {
            throw MedServeException.Invalid(
                $"{manifest.Name} takes {width} values per record ('{input.Name}' [-1, {width}]); the CSV gives {featureColumns.Length} columns besides the id. Name the ones to use, in order, with columns (HTTP ?columns=a,b,...; CLI --columns a,b,...)",
                "columns");
        }
        var units = featureColumns.Select(c => FeatureValues.SplitHeader(header[c]).Unit).ToArray();
        if (named is null && units.Any(u => u is not null))
        {
            throw MedServeException.Invalid($"{manifest.Name} does not name its features, so its columns take no units", "columns");
        }
        var cells = new (int Feature, double? Number, string? Unit, bool NotANumber)[width];
        while (true)
        {
            try
            {
                if (!parser.Read())
                {
                    break;
                }
            }
            catch (Exception e) when (e is CsvFormatException or CsvRecordTooLargeException)
            {
                var at = (e is CsvFormatException f ? f.RowNumber : parser.RowNumber + 1) + 1;
                throw MedServeException.Invalid($"CSV line {at} is malformed", $"line {at}");
            }
            // Records are numbered as lines with the header as line 1 (a quoted field across lines counts once):
            // the reader numbers data rows from 1.
            var line = parser.RowNumber + 1L;
            var count = parser.RowFieldCount;
            if (IsBlank(parser, count))
            {
                continue;
            }
            if (count != header.Length)
            {
                throw MedServeException.Invalid($"CSV line {line} has {count} fields; the header has {header.Length}", $"line {line}");
            }
            var id = idColumn >= 0 && parser.GetFieldSpan(idColumn).Trim() is { Length: > 0 } given ? given.ToString() : null;
            var (values, errors) = ReadRow(parser, featureColumns, units, named, width, cells);
            yield return new CsvRow(line, id, values, errors);
        }
    }

    private static bool IsBlank(CsvDataReader parser, int count)
    {
        for (var i = 0; i < count; i++)
        {
            if (parser.GetFieldSpan(i).Length > 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>One row's values in the model's order, or its errors naming each bad feature (or column, for unnamed features).</summary>
    private static (double[]? Values, IReadOnlyList<FieldError> Errors) ReadRow(CsvDataReader parser, int[] featureColumns, string?[] units, FeatureValues? named, int width,
        (int Feature, double? Number, string? Unit, bool NotANumber)[] cells)
    {
        if (named is null)
        {
            // Unnamed features: numbers in order; an empty cell is NaN, which the model refuses unless its manifest allows it.
            var values = new double[width];
            for (var k = 0; k < width; k++)
            {
                var text = parser.GetFieldSpan(featureColumns[k]).Trim();
                if (text.Length == 0)
                {
                    values[k] = double.NaN;
                }
                else if (!TryNumber(text, out values[k]))
                {
                    var column = $"column {featureColumns[k] + 1}";
                    return (null, [new FieldError(column, $"{column}: not a number")]);
                }
            }
            return (values, []);
        }
        for (var k = 0; k < width; k++)
        {
            var text = parser.GetFieldSpan(featureColumns[k]).Trim();
            cells[k] = text.Length == 0 ? (k, null, units[k], false)
                : TryNumber(text, out var value) ? (k, value, units[k], false)
                : (k, null, units[k], true);
        }
        var row = named.Read(cells);
        return (row.Values, row.Errors);
    }

    private static bool TryNumber(ReadOnlySpan<char> text, out double value) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);

    /// <summary>
    /// The header index of each named column, in the order given. Header and column names are the caller's text (a
    /// header may be a patient's name): errors name positions, never the text.
    /// </summary>
    private static int[] NamedColumns(string[] header, string[] columns) =>
        [.. columns.Select((name, j) => Array.FindIndex(header, h => h.Trim() == name) is var i and >= 0
            ? i
            : throw MedServeException.Invalid($"columns[{j}] is not in the CSV header", $"columns[{j}]"))];

    /// <summary>
    /// The header index of each feature, in the labels' order, matched by name: trimmed, case-insensitive, '_' as
    /// ' ' (so <c>mean_radius</c> is <c>mean radius</c>). Columns that are no feature (a label, earlier scores) are
    /// ignored; a missing feature, or two columns for one feature, is refused naming it.
    /// </summary>
    private static int[] MatchedColumns(string[] header, int idColumn, FeatureValues named, string model)
    {
        var labels = named.Features.Select(f => f.Name).ToArray();
        var found = new int[labels.Length];
        Array.Fill(found, -1);
        for (var i = 0; i < header.Length; i++)
        {
            if (i == idColumn || named.IndexOf(FeatureValues.SplitHeader(header[i]).Name) is not (>= 0 and var k))
            {
                continue;
            }
            if (found[k] >= 0)
            {
                throw MedServeException.Invalid(
                    $"CSV columns {found[k] + 1} and {i + 1} are both feature '{labels[k]}' of {model}; keep one, or name the columns to use with columns",
                    labels[k]);
            }
            found[k] = i;
        }
        var missing = Enumerable.Range(0, labels.Length).Where(k => found[k] < 0).Select(k => labels[k]).ToArray();
        if (missing.Length > 0)
        {
            const int shown = 5;
            var names = string.Join(", ", missing.Take(shown).Select(m => $"'{m}'")) + (missing.Length > shown ? $" and {missing.Length - shown} more" : "");
            throw MedServeException.Invalid(
                $"{model} needs {labels.Length} features by name; the CSV header has no column for {names}. " +
                "Rename the header's columns, or name the ones to use, in the model's order, with columns (HTTP ?columns=a,b,...; CLI --columns a,b,...)",
                missing.Length == 1 ? missing[0] : "columns");
        }
        return found;
    }

    /// <summary>One row per item: id, error, then every output element (<c>probabilities_0</c>, <c>probabilities_1</c>, ...).</summary>
    public static string WriteResults(JobItemResult[] results)
    {
        var layout = results.FirstOrDefault(r => r.Outputs is not null)?.Outputs!.Select(o => (o.Name, Count: (int)o.ElementCount)).ToArray() ?? [];
        var csv = new StringBuilder("id,error");
        foreach (var (name, count) in layout)
        {
            for (var i = 0; i < count; i++)
            {
                csv.Append(',').Append(name).Append('_').Append(i.ToString(CultureInfo.InvariantCulture));
            }
        }
        csv.Append('\n');
        foreach (var result in results)
        {
            csv.Append(Quote(result.ItemId)).Append(',').Append(result.Error is null ? "" : Quote(result.Error));
            foreach (var (name, count) in layout)
            {
                var output = result.Outputs?.FirstOrDefault(o => o.Name == name);
                for (var i = 0; i < count; i++)
                {
                    csv.Append(',');
                    if (output is not null && i < output.ElementCount)
                    {
                        csv.Append(output.GetDouble(i).ToString("R", CultureInfo.InvariantCulture));
                    }
                }
            }
            csv.Append('\n');
        }
        return csv.ToString();
    }

    private static string Quote(string text) =>
        text.AsSpan().IndexOfAny(",\"\n\r") < 0 ? text : "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
