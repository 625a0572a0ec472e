using System.Globalization;
using System.Text.Json;
using MedServe.Protocol;

namespace MedServe.Medical.Records;

/// <summary>One record of a request: its position, how messages name it, the caller's id, and its values or its errors.</summary>
public sealed record RecordRow(int Row, string Where, string? Id, double[]? Values, IReadOnlyList<FieldError> Errors)
{
    public bool Ok => Values is not null;
}

/// <summary>
/// Named tabular records (JSON or CSV) into one inference request, and its outputs back per record, named by the model's
/// output labels. Field rules are <see cref="FeatureValues"/>'s, shared with CSV jobs and FHIR.
/// <para>JSON: <c>{"records": [{"age": 61, "s6": {"value": 5.0, "unit": "mmol/L"}, "id": "p1"}, ...]}</c>. A field is a
/// number (in the feature's unit), <c>null</c> (missing), <c>"NaN"</c>/<c>"Infinity"</c> where the input allows them, or
/// an object with <c>value</c> and a UCUM <c>unit</c>. Names match features trimmed, case-insensitively, <c>_</c> for a
/// space; other fields are ignored, and <c>id</c> (a string or number) is echoed in that record's answer.</para>
/// <para>CSV: a header naming the features (<c>s6 [mmol/L]</c> gives a column's unit), an optional <c>id</c> column.</para>
/// </summary>
public static class NamedRecords
{
    /// <summary>Reads <c>{"records": [...]}</c>; a body that is not that is refused whole, naming the field; each record's errors are its own.</summary>
    public static RecordRow[] ReadJson(ReadOnlyMemory<byte> body, FeatureValues features)
    {
        JsonText.RequireUtf8(body.Span, "the body");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            // The parser's message may quote the input: say where, not what.
            throw MedServeException.Invalid($"the body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})", "body");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("records", out var records))
            {
                throw MedServeException.Invalid("the body must be a JSON object with \"records\": an array of records, each an object of feature names and values", "records");
            }
            if (records.ValueKind != JsonValueKind.Array)
            {
                throw MedServeException.Invalid("records must be an array of objects", "records");
            }
            if (records.GetArrayLength() == 0)
            {
                throw MedServeException.Invalid("records is empty: send at least one record", "records");
            }
            var rows = new RecordRow[records.GetArrayLength()];
            var i = 0;
            foreach (var record in records.EnumerateArray())
            {
                rows[i] = ReadRecord(i, record, features);
                i++;
            }
            return rows;
        }
    }

    private static RecordRow ReadRecord(int i, JsonElement record, FeatureValues features)
    {
        var where = $"records[{i}]";
        if (record.ValueKind != JsonValueKind.Object)
        {
            return new RecordRow(i, where, null, null, [new FieldError(where, $"{where}: not an object of feature names and values")]);
        }
        string? id = null;
        var fields = new List<(int, double?, string?, bool)>();
        var given = new bool[features.Width];
        var errors = new List<FieldError>();
        foreach (var property in record.EnumerateObject())
        {
            if (property.NameEquals("id"))
            {
                id = property.Value.ValueKind switch
                {
                    JsonValueKind.String => property.Value.GetString(),
                    JsonValueKind.Number => property.Value.GetRawText(),
                    _ => null,
                };
                continue;
            }
            var k = features.IndexOf(property.Name);
            if (k < 0)
            {
                continue; // not a feature of this model (a label, a note): ignored, as CSV columns are
            }
            var name = features.Features[k].Name;
            if (given[k])
            {
                errors.Add(new FieldError(name, $"'{name}' is given twice"));
                continue;
            }
            given[k] = true;
            var value = property.Value;
            string? unit = null;
            if (value.ValueKind == JsonValueKind.Object)
            {
                if (value.TryGetProperty("unit", out var u))
                {
                    if (u.ValueKind != JsonValueKind.String || u.GetString() is not { Length: > 0 } text)
                    {
                        errors.Add(new FieldError(name, $"'{name}': unit must be a UCUM code, as a string"));
                        continue;
                    }
                    unit = text;
                }
                if (!value.TryGetProperty("value", out value))
                {
                    errors.Add(new FieldError(name, $"'{name}' is an object without a value (write {{\"value\": 5.5, \"unit\": \"mmol/L\"}})"));
                    continue;
                }
            }
            fields.Add(value.ValueKind switch
            {
                JsonValueKind.Number when value.TryGetDouble(out var n) => (k, n, unit, false),
                JsonValueKind.Null => (k, null, unit, false),
                JsonValueKind.String when value.GetString() is "NaN" => (k, double.NaN, unit, false),
                JsonValueKind.String when value.GetString() is "Infinity" => (k, double.PositiveInfinity, unit, false),
                JsonValueKind.String when value.GetString() is "-Infinity" => (k, double.NegativeInfinity, unit, false),
                _ => (k, null, unit, true),
            });
        }
        var row = features.Read(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fields));
        errors.AddRange(row.Errors.Where(e => errors.All(x => x.Field != e.Field)));
        return errors.Count == 0
            ? new RecordRow(i, where, id, row.Values, [])
            : new RecordRow(i, where, id, null, [.. errors.Select(e => e with { Message = $"{where}: {e.Message}" })]);
    }

    /// <summary>Reads a CSV of records (header of feature names, optional units and id column); whole-file errors are refused naming the line or column.</summary>
    public static RecordRow[] ReadCsv(byte[] body, ModelManifest manifest)
    {
        JsonText.RequireUtf8(body, "the CSV");
        return [.. CsvRecords.ReadRows(body, manifest, null).Select((r, i) => new RecordRow(i, $"CSV line {r.Line}", r.Id, r.Values,
            [.. r.Errors.Select(e => e with { Message = $"CSV line {r.Line}: {e.Message}" })]))];
    }

    /// <summary>One request of the records that can run, stacked [rows, n] in their order; null when none can.</summary>
    public static InferenceRequest? Request(FeatureValues features, IReadOnlyList<RecordRow> rows)
    {
        var good = rows.Where(r => r.Ok).Select(r => r.Values!).ToArray();
        return good.Length == 0 ? null : new InferenceRequest([features.Tensor(good)]);
    }

    /// <summary>
    /// The answer: model and version, counts, and per record (in order) either its outputs, each named by the output's
    /// labels when it has them (<c>{"probabilities": {"malignant": 0.03, "benign": 0.97}}</c>), or its errors.
    /// </summary>
    public static void WriteAnswer(Utf8JsonWriter w, ModelManifest manifest, string version, IReadOnlyList<RecordRow> rows, InferenceResponse? response)
    {
        var ran = rows.Count(r => r.Ok);
        w.WriteStartObject();
        w.WriteString("model_name", manifest.Name);
        w.WriteString("model_version", response?.ModelVersion ?? version);
        w.WriteNumber("succeeded", ran);
        w.WriteNumber("failed", rows.Count - ran);
        w.WriteStartArray("results");
        var slot = 0;
        foreach (var row in rows)
        {
            w.WriteStartObject();
            w.WriteNumber("row", row.Row);
            if (row.Id is not null)
            {
                w.WriteString("id", row.Id);
            }
            if (row.Ok && response is not null)
            {
                w.WriteStartObject("outputs");
                foreach (var output in response.Outputs)
                {
                    WriteOutput(w, output, manifest.Outputs.FirstOrDefault(o => o.Name == output.Name), slot, ran);
                }
                w.WriteEndObject();
                slot++;
            }
            else
            {
                w.WriteStartArray("errors");
                foreach (var error in row.Errors)
                {
                    w.WriteStartObject();
                    w.WriteString("field", error.Field);
                    w.WriteString("message", error.Message);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteOutput(Utf8JsonWriter w, Tensor output, TensorSpec? spec, int row, int rows)
    {
        var per = output.ElementCount / Math.Max(1, rows);
        w.WritePropertyName(output.Name);
        if (spec?.Labels is { } labels && labels.Length == per)
        {
            w.WriteStartObject();
            for (var j = 0; j < per; j++)
            {
                WriteNumber(w, labels[j], output.GetDouble(row * per + j));
            }
            w.WriteEndObject();
            return;
        }
        w.WriteStartArray();
        for (var j = 0; j < per; j++)
        {
            WriteNumber(w, null, output.GetDouble(row * per + j));
        }
        w.WriteEndArray();
    }

    /// <summary>A number, or its name as a string when it is not finite (JSON has no NaN).</summary>
    private static void WriteNumber(Utf8JsonWriter w, string? name, double value)
    {
        if (name is not null)
        {
            w.WritePropertyName(name);
        }
        if (double.IsFinite(value))
        {
            w.WriteNumberValue(value);
        }
        else
        {
            w.WriteStringValue(value.ToString(CultureInfo.InvariantCulture));
        }
    }
}
