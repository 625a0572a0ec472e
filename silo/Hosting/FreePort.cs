using System.Net;
using System.Net.Sockets;

namespace MedServe.Silo.Hosting;

/// <summary>Picks loopback ports so two embedded nodes can run side by side.</summary>
internal static class FreePort
{
    /// <summary><paramref name="preferred"/> when it is free, else any free port.</summary>
    public static int PreferOrAny(int preferred) => IsFree(preferred) ? preferred : Any();

    public static int Any()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
