import Foundation

/// Public keys made by `ssh-keygen` (throwaway; their private halves are not kept), and one private ed25519 key
/// file for the key-file format tests.
enum TestKeys {
    static let ed25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIAyKN6J8NIGOBE5vJ2IZhtp/H1GUFM7uRoGdA7RZR20T"
    static let p256 = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFJAo6Npz1jAOocnMMZZ6oLr2fuvYGb2iwThrg1sAhYHG8Mp/POfyHm0QkROvOjE/XpmomgHft6GXUi6uY8AUq8="
    static let p384 = "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBJeZvhzzHsKRISsj3vvt619NNGCreR8K0t+AG8tQeZsCoxzQ/aNm+JMNaNtIa5R+soUatYhlXzARboPxYnM0ZnTsKLBbN0KyIm8sw8pHPYxqx9odbfmtrxRJUaGal8LodQ=="
    static let p521 = "AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAExZ/AXM9TS6d48YyUa1+k1Oh3aIlTcQhGeTYGf0oHmIdPGKVcE2mO+3dRAk3Aw+yK8L5GsRg3IkZSt68d5/EWN0gE0YsyuUY4PF5mI4auqkUOVn7I6E8U48ubOudB1wAEGuHjmktFot4+ZvRqbhtufdvujYby9cSp/nOYp8LkxWk+crQ=="
    static let rsa = "AAAAB3NzaC1yc2EAAAADAQABAAABAQC7dRoZxky7ZnnuAOeetjE3b2X2rv8OXOC1qvibqZMstwUU5ZGUzSIB0/h+G+BWaAJu2ngFa8+JvqvYua04QOf+PVBn5TLowN5KIjQurJQ25oUSPFxMFFFZBZQMfK14JGhm0KjwV7ull4PiQelSWL4OTtwNqWNlhtE9r7AZB2b3X4mboptumNQfCzERql7ldyB403hWp9t7/7aSQ7iyT7AGdaRumSNL2uzGvq9ugUu6u7Akx6oNAX9a/4oB0UZzFqM5c3pZWf3/QTfzyW9LX9FBZdljC+7SUG4taqbYLfLgKAydvEKPu78nDxc0/VEk4f3B9RsI4z7II/vsBRlVvqUx"
    static let dsa = "AAAAB3NzaC1kc3MAAACBAI/VBHW43ePt7Sndjubf2TTXZMTrPnDeU5gQQblRuoLcHuv1TeXptnGlD0Ct8mWiYxIjP3qYN400MSnjQILIUS8HPfGIfO18nEeszW+UlRbHB+vTzWlQ2AKT3coKMMmJ4oexi3DNv+KXD0uEUCPMTPMh9xcjctkbxZspM5pMsy81AAAAFQDgH+sGaKoMoby+ne558poWyaIxswAAAIAZyRvgoTdotJ4iLPOCmPasdDcRdWn2AK8XoxbPstKCVxknBHqKjruHe/KvsOpZjvK+bVgUsCDvWMdiGPYkiCznKyYKnuca1+SREvbvN99fnZob6tqChohvXXrVFE+mzgQ+HwR4mAvSo3RfgEqnv0EqY+pWOETIeuaRItiMEpLDJAAAAIAfUiaTOICuQio8qDlMy/TclZ6eYi2Awu/vcVwagiS6rbpqN3HZHN2W6hDCe/Fw9DeLsPp286fId2uor8wrmVDu/MNalv27OdOStJbo3Tm4ceNHpFVve/8xILUSEYaq6lEb0GA2RoSSkl6f1Gdr1YyJxZs8kW9HW20Dd/l1bdLVlw=="

    /// `ssh-keygen -t ed25519 -N '' -C ed25519@test`; its public key is `ed25519` above.
    static let ed25519PrivateFile = """
        -----BEGIN OPENSSH PRIVATE KEY-----
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
        QyNTUxOQAAACAMijeifDSBjgRObydiGYbafx9RlBTO7kaBnQO0WUdtEwAAAJCIIlORiCJT
        kQAAAAtzc2gtZWQyNTUxOQAAACAMijeifDSBjgRObydiGYbafx9RlBTO7kaBnQO0WUdtEw
        AAAEBJvrveqBYGbBGY2QtnTJ1Bo7kKCDSDBDuaKv9PqzLjiQyKN6J8NIGOBE5vJ2IZhtp/
        H1GUFM7uRoGdA7RZR20TAAAADGVkMjU1MTlAdGVzdAE=
        -----END OPENSSH PRIVATE KEY-----

        """

    static func blob(_ base64: String) -> [UInt8] { [UInt8](Data(base64Encoded: base64)!) }
}
