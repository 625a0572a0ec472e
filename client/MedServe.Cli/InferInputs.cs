using System.Globalization;
using System.Text;
using System.Text.Json;
using MedServe.Protocol;

namespace MedServe.Cli;

/// <summary>
/// Turns <c>infer</c>'s arguments into a V2 request body and parses it with <see cref="V2Codec"/>, the parser of the
/// HTTP front end, so a request means the same on the command line as over HTTP.
/// </summary>
internal static class InferInputs
{
    /// <summary>The request from a V2 JSON file (<c>--data</c>) or from <c>--input</c> specs.</summary>
    public static InferenceRequest Parse(string? dataFile, IReadOnlyList<string> inputs, string baseDirectory)
    {
        byte[] body;
        if (dataFile is not null)
        {
            if (inputs.Count > 0)
            {
                throw MedServeException.Invalid("give either --data or --input, not both", "--data");
            }
            body = ReadFile(dataFile.TrimStart('@'), baseDirectory, "--data");
        }
        else if (inputs.Count > 0)
        {
            body = Build(inputs, baseDirectory);
        }
        else
        {
            throw MedServeException.Invalid("give the request: --input name=shape:datatype:values (repeatable) or --data request.json", "--input");
        }
        return V2Codec.ParseRequest(body, jsonLength: null).Request;
    }

    /// <summary><c>name=1,10:FP32:1,2,3</c> or <c>name=1x10:FP32:@values.json</c> (a JSON array, flat or nested) for each input.</summary>
    private static byte[] Build(IReadOnlyList<string> inputs, string baseDirectory)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("inputs");
            foreach (var spec in inputs)
            {
                var eq = spec.IndexOf('=', StringComparison.Ordinal);
                var parts = eq > 0 ? spec[(eq + 1)..].Split(':', 3) : [];
                if (parts.Length != 3)
                {
                    throw MedServeException.Invalid($"--input '{Shorten(spec)}' must be name=shape:datatype:values (e.g. input=1,10:FP32:0.5,1.5,... or input=1,10:FP32:@values.json)", "--input");
                }
                var name = spec[..eq];
                json.WriteStartObject();
                json.WriteString("name", name);
                json.WriteString("datatype", parts[1].Trim().ToUpperInvariant());
                json.WriteStartArray("shape");
                foreach (var dim in parts[0].Split([',', 'x'], StringSplitOptions.TrimEntries))
                {
                    json.WriteNumberValue(long.TryParse(dim, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var d)
                        ? d
                        : throw MedServeException.Invalid($"--input {name}: shape '{parts[0]}' must be dimensions like 1,10 or 1x10", "--input"));
                }
                json.WriteEndArray();
                json.WritePropertyName("data");
                if (parts[2].StartsWith('@'))
                {
                    var file = ReadFile(parts[2][1..], baseDirectory, $"--input {name}");
                    try
                    {
                        using var values = JsonDocument.Parse(file);
                        if (values.RootElement.ValueKind != JsonValueKind.Array)
                        {
                            throw MedServeException.Invalid($"--input {name}: {parts[2][1..]} must hold a JSON array of values", "--input");
                        }
                        values.RootElement.WriteTo(json);
                    }
                    catch (JsonException e)
                    {
                        throw MedServeException.Invalid($"--input {name}: {parts[2][1..]} is not valid JSON (line {e.LineNumber + 1})", "--input");
                    }
                }
                else
                {
                    json.WriteStartArray();
                    foreach (var value in parts[2].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                    {
                        WriteValue(json, value);
                    }
                    json.WriteEndArray();
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>A number as a number, <c>true</c>/<c>false</c> as booleans, anything else (NaN, Infinity, text) as a string for the codec to judge.</summary>
    private static void WriteValue(Utf8JsonWriter json, string value)
    {
        if (value is "true" or "false")
        {
            json.WriteBooleanValue(value == "true");
        }
        else if (long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            json.WriteNumberValue(integer);
        }
        else if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
        {
            json.WriteNumberValue(number);
        }
        else
        {
            json.WriteStringValue(value);
        }
    }

    private static byte[] ReadFile(string path, string baseDirectory, string field)
    {
        var full = Path.GetFullPath(path, baseDirectory);
        if (!File.Exists(full))
        {
            throw MedServeException.Invalid($"{field}: no file {path}", field);
        }
        return File.ReadAllBytes(full);
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..57] + "...";

    /// <summary>The response as V2 JSON (all outputs as JSON data: binary has no place on a terminal).</summary>
    public static string ToJson(InferenceResponse response)
    {
        var writer = new System.Buffers.ArrayBufferWriter<byte>(4096);
        V2Codec.WriteResponse(response, new V2OutputOptions(false, new HashSet<string>()), writer);
        return Encoding.UTF8.GetString(writer.WrittenSpan);
    }
}
