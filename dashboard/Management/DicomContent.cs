using System.Text;
using MedServe.Protocol;
using Microsoft.Net.Http.Headers;

namespace MedServe.Dashboard.Management;

/// <summary>
/// DICOM request bodies on the V2 infer endpoint: <c>application/dicom</c> (one Part 10 file) or
/// <c>multipart/related; type="application/dicom"; boundary=...</c> (the files of one series, as DICOMweb STOW-RS
/// sends them), split without copying. Errors name positions, never header values or content. Here, in the web app's
/// project, because V2 infer (silo) and DICOM jobs (management API) both read these bodies.
/// </summary>
public static class DicomContent
{
    private const string Dicom = MedicalFormats.Dicom;

    private const int MaxBoundary = 200;

    /// <summary>Most parts one multipart body may hold.</summary>
    public const int MaxParts = 10_000;

    /// <summary>How a request carries DICOM, if it does.</summary>
    public enum Kind
    {
        None,
        File,
        Series,
    }

    /// <summary>Whether <paramref name="contentType"/> is DICOM: one file, a series, or neither (then the V2 JSON/binary codec reads the body).</summary>
    public static Kind Classify(string? contentType, out string? boundary)
    {
        boundary = null;
        if (contentType is null || !MediaTypeHeaderValue.TryParse(contentType, out var media) || media.MediaType.Value is not { } type)
        {
            return Kind.None;
        }
        if (type.Equals(Dicom, StringComparison.OrdinalIgnoreCase))
        {
            return Kind.File;
        }
        if (!type.Equals("multipart/related", StringComparison.OrdinalIgnoreCase))
        {
            return Kind.None;
        }
        var related = media.Parameters.FirstOrDefault(p => p.Name.Equals("type", StringComparison.OrdinalIgnoreCase))?.Value.Value;
        if (related is null || !HeaderUtilities.RemoveQuotes(related).Equals(Dicom, StringComparison.OrdinalIgnoreCase))
        {
            throw MedServeException.Unsupported("multipart/related bodies must declare type=\"application/dicom\" (a DICOM series); other types are not taken", "Content-Type");
        }
        boundary = HeaderUtilities.RemoveQuotes(media.Boundary).Value;
        // RFC 2046 says at most 70 characters, but PACS send longer ones (Orthanc's STOW-RS client: 73); a bound still applies.
        if (string.IsNullOrEmpty(boundary) || boundary.Length > MaxBoundary)
        {
            throw MedServeException.Invalid($"multipart/related needs a boundary parameter of 1-{MaxBoundary} characters", "Content-Type");
        }
        return Kind.Series;
    }

    /// <summary>
    /// The parts of a multipart body (RFC 2046), each of which must be <c>application/dicom</c>; their content as slices
    /// of <paramref name="body"/>.
    /// </summary>
    public static List<ReadOnlyMemory<byte>> Split(ReadOnlyMemory<byte> body, string boundary)
    {
        var span = body.Span;
        var delimiter = Encoding.ASCII.GetBytes("--" + boundary);
        var parts = new List<ReadOnlyMemory<byte>>();
        // The first delimiter starts the body or a line.
        var at = span.StartsWith(delimiter) ? 0 : IndexOfLine(span, delimiter, 0);
        if (at < 0)
        {
            throw Malformed("no part starts with the boundary");
        }
        while (true)
        {
            var after = at + delimiter.Length;
            if (span[after..].StartsWith("--"u8))
            {
                break; // close delimiter: the epilogue that may follow is ignored
            }
            var lineEnd = span[after..].IndexOf("\r\n"u8);
            if (lineEnd < 0 || !span.Slice(after, lineEnd).Trim(" \t"u8).IsEmpty)
            {
                throw Malformed($"part {parts.Count + 1}'s boundary line does not end");
            }
            var headersStart = after + lineEnd + 2;
            var headersEnd = span[headersStart..].IndexOf("\r\n\r\n"u8);
            int contentStart;
            if (span[headersStart..].StartsWith("\r\n"u8))
            {
                headersEnd = 0;
                contentStart = headersStart + 2;
            }
            else if (headersEnd >= 0)
            {
                contentStart = headersStart + headersEnd + 4;
            }
            else
            {
                throw Malformed($"part {parts.Count + 1}'s headers do not end");
            }
            if (headersEnd > 16 * 1024)
            {
                throw Malformed($"part {parts.Count + 1}'s headers are over 16 KiB");
            }
            if (!IsDicomPart(span.Slice(headersStart, headersEnd)))
            {
                throw MedServeException.Unsupported($"part {parts.Count + 1} is not application/dicom (each part of a series needs Content-Type: application/dicom)", "Content-Type");
            }
            var next = IndexOfLine(span, delimiter, contentStart);
            if (next < 0)
            {
                throw Malformed($"part {parts.Count + 1} does not end with the boundary");
            }
            if (parts.Count == MaxParts)
            {
                throw Malformed($"more than {MaxParts} parts");
            }
            parts.Add(body[contentStart..(next - 2)]);
            at = next;
        }
        if (parts.Count == 0)
        {
            throw Malformed("no parts");
        }
        return parts;
    }

    /// <summary>The index of <paramref name="delimiter"/> at the start of a line (after CRLF) at or after <paramref name="from"/>, or -1.</summary>
    private static int IndexOfLine(ReadOnlySpan<byte> span, byte[] delimiter, int from)
    {
        var pos = from;
        while (true)
        {
            var i = span[pos..].IndexOf(delimiter);
            if (i < 0)
            {
                return -1;
            }
            var at = pos + i;
            if (at - 2 >= from && span[at - 2] == '\r' && span[at - 1] == '\n')
            {
                return at;
            }
            pos = at + 1;
        }
    }

    private static bool IsDicomPart(ReadOnlySpan<byte> headers)
    {
        foreach (var line in Encoding.ASCII.GetString(headers).Split("\r\n"))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && line[..colon].Trim().Equals("Content-Type", StringComparison.OrdinalIgnoreCase))
            {
                return MediaTypeHeaderValue.TryParse(line[(colon + 1)..].Trim(), out var media)
                    && media.MediaType.Equals(Dicom, StringComparison.OrdinalIgnoreCase);
            }
        }
        return false;
    }

    private static MedServeException Malformed(string what) => MedServeException.Invalid($"the multipart/related body is malformed: {what}", "body");
}
